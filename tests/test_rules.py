"""The rule language: terms, field scopes, regexes, case, weights, expressions, rule sets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.categorize import compile_topics, judge
from aggregator.config import RuleSet, TopicConfig
from aggregator.errors import ConfigError
from aggregator.models import Item
from aggregator.rules import (
    CASE,
    EXACT,
    SPLIT,
    STEM,
    FieldText,
    RuleError,
    TermIndex,
    _head_parts,
    _stem,
    evaluate,
    index_fields,
    parse_expression,
    parse_term,
)
from tests.conftest import write_config

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def item(title: str, summary: str = "", *, source: str = "s", language: str = "en",
         categories: tuple[str, ...] = ()) -> Item:  # fmt: skip
    return Item(
        source_id=source, keys=("link:x",), link="https://x.org/a", guid=None, title=title,
        summary_html="", summary_text=summary, published_at=NOW, updated_at=NOW,
        date_missing=False, author=None, categories=categories, language=language,
        content_hash="h",
    )  # fmt: skip


def verdict(it: Item, rule_sets: dict[str, object] | None = None, **rules: object):  # type: ignore[no-untyped-def]
    topic = TopicConfig.model_validate({"slug": "t", "title": "T", **rules})
    sets = {k: RuleSet.model_validate(v) for k, v in (rule_sets or {}).items()}
    return judge(it, compile_topics([topic], sets)[0])


FIELDS = {"title": "Cotton futures rise in China", "summary": "fine china exports",
          "category": "", "source": "", "language": "en"}  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cotton AND (price OR futures)", True),
        ("cotton AND (price OR candy)", False),
        ("cotton futures", True),  # side by side: AND
        ('"cotton futures"', True),  # a phrase
        ('"futures cotton"', False),
        ("cotton AND NOT candy", True),
        ("NOT cotton", False),
        ("title:china", True),
        ("summary:futures", False),
        ("re:fut\\w+ OR wool", True),
        ('"re:(price|futures)" AND cotton', True),  # a regex with parentheses is quoted
        ("wool OR silk", False),
    ],
)
def test_expressions(expression: str, expected: bool) -> None:
    assert evaluate(parse_expression(expression), index_fields(FIELDS), []) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cotton AND (price OR futures", "column 12: missing ')' for the '(' here"),
        ("cotton AND", "column 11: expression ends where a term was expected"),
        ("cotton) OR wool", "column 7: unexpected ')' (no matching '(')"),
        ('cotton AND "price', "column 12: unclosed quote"),
        ("OR wool", "column 1: expected a term, found 'OR'"),
        ("cotton OR re:[", "column 11: invalid regular expression"),
        ("", "column 1: empty expression"),
    ],
)
def test_expression_errors_say_where(expression: str, message: str) -> None:
    with pytest.raises(RuleError) as raised:
        parse_expression(expression)
    assert str(raised.value).startswith(message)


def test_case_sensitive_terms() -> None:
    china = {"term": "China", "case_sensitive": True}
    assert verdict(item("Exports from China rise"), include=[china]).belongs
    assert not verdict(item("Fine bone china exports"), include=[china]).belongs
    assert verdict(item("Fine bone china exports"), include=["China"]).belongs  # default


def test_field_scopes() -> None:
    assert not verdict(item("Markets", "cotton prices"), include=["title:cotton"]).belongs
    assert verdict(item("Cotton prices"), include=["title:cotton"]).belongs
    assert verdict(
        item("x", categories=("Wool",)), include=["category:wool"], threshold=0.5
    ).belongs
    assert verdict(item("x", source="fibre2fashion"), include=["source:fibre2fashion"]).belongs
    assert verdict(item("纺织", language="zh"), include=["language:zh"]).belongs


def test_weights_and_threshold() -> None:
    rules = {"include": ["cotton", "yarn", {"term": "ICE cotton", "weight": 3}], "threshold": 2}
    title_hit = verdict(item("Cotton rally"), **rules)
    assert (title_hit.belongs, title_hit.score) == (True, 2.0)  # a title hit counts double
    one_lead_hit = verdict(item("Markets", "cotton rally"), **rules)
    assert (one_lead_hit.belongs, one_lead_hit.score) == (False, 1.5)  # the lead counts 1.5
    one_body_hit = verdict(item("Markets", "Prices fell. Then a cotton rally."), **rules)
    assert (one_body_hit.belongs, one_body_hit.score) == (False, 1.0)
    two_body_hits = verdict(item("Markets", "Prices fell. Then cotton and yarn."), **rules)
    assert (two_body_hits.belongs, two_body_hits.score) == (True, 2.0)
    heavy = verdict(item("Markets", "Prices fell. ICE cotton up"), **rules)
    assert heavy.score == 4.0  # "ICE cotton" x3, plus "cotton" once (terms count once)
    repeated = verdict(item("Cotton cotton", "cotton"), **rules)
    assert repeated.score == 2.0  # one term, counted once, in its best field


def test_min_terms_asks_for_several_terms_unless_one_is_in_the_title() -> None:
    """One heavy word in the lead reaches a threshold alone ("label" in "garment
    accessory units making labels"): ``min_terms`` asks for a second term, or a title
    hit, before the item is about the topic (the guide: subject, not mention)."""
    rules = {"include": [{"term": "label", "weight": 2}, "brand"], "threshold": 3, "min_terms": 2}
    one_term = verdict(item("Zone signs deals", "Units will make labels and zips."), **rules)
    assert (one_term.belongs, one_term.score) == (False, 3.0)
    assert "only 1 distinct term(s), none in the title" in one_term.reasons()
    assert verdict(item("Zone signs deals", "A brand's new label. More."), **rules).belongs
    assert verdict(item("Label launch", "x"), include=rules["include"], threshold=2,
                   min_terms=2).belongs  # fmt: skip
    assert verdict(item("Zone signs deals", "Units will make labels and zips."),
                   include=rules["include"], threshold=3).belongs  # fmt: skip


def test_excludes_veto_and_are_masked_first() -> None:
    vetoed = verdict(item("棉花糖机械展销会"), include=["棉花"], exclude=["棉花糖"])
    assert not vetoed.belongs
    assert [h.term for h in vetoed.vetoes] == ["棉花糖"]
    assert vetoed.hits == ()  # masked: 棉花 inside 棉花糖 never scored


def test_match_expression_with_includes() -> None:
    rules = {"include": ["cotton"], "match": "price OR futures"}
    assert verdict(item("Cotton futures"), **rules).belongs
    result = verdict(item("Cotton harvest"), **rules)
    assert (result.belongs, result.expression) == (False, False)
    assert verdict(item("Cotton price"), match="cotton AND price").belongs


def test_rule_sets_are_shared() -> None:
    sets = {"no-candy": {"exclude": ["cotton candy", "棉花糖"]}, "fibres": {"include": ["wool"]}}
    rules = {"include": ["cotton"], "use": ["no-candy", "fibres"]}
    assert verdict(item("Wool prices"), sets, **rules).belongs
    assert not verdict(item("Cotton candy fair"), sets, **rules).belongs


def test_regex_terms_are_time_limited() -> None:
    term = parse_term("re:(a+)+$")
    # Finishes (or times out) instead of hanging:
    assert term.search(FieldText("a" * 30 + "b")) is False


def test_curator_mistakes_are_reported_with_lines(tmp_path: Path) -> None:
    topics = """\
rule_sets:
  no-candy:
    exclude: [cotton candy]
topics:
  - slug: cotton
    title: Cotton
    include: [cotton]
    use: [no-cnady]
  - slug: wool
    title: Wool
    match: wool AND (price OR
  - slug: fibre
    title: Fibre
    include: ["re:[unclosed", {term: China, case: yes}]
  - slug: empty
    title: Nothing
"""
    found = _config_problems(tmp_path, topics)
    assert (
        "topics.yaml:11: topics[1].match: column 19: expression ends where a term was "
        "expected in 'wool AND (price OR'"
    ) in found
    assert any(
        p.startswith("topics.yaml:14: topics[2].include[0]: invalid regular expression")
        for p in found
    )
    assert any(
        p.startswith("topics.yaml:14: topics[2].include[1]: a term mapping takes") for p in found
    )
    assert (
        "topics.yaml:15: topics[3]: empty topic: give it include terms, a match expression "
        "or rule sets"
    ) in found
    # Cross-file checks run once the files themselves are valid:
    fixed = (
        topics.replace("match: wool AND (price OR", "match: wool")
        .replace('["re:[unclosed", {term: China, case: yes}]', "[fibre]")
        .replace("  - slug: empty\n    title: Nothing\n", "")
    )
    found = _config_problems(tmp_path, fixed)
    assert found == [
        "topics.yaml:8: topics[0].use[0]: unknown rule set 'no-cnady' (did you mean 'no-candy'?)"
    ]


def _config_problems(tmp_path: Path, topics: str) -> list[str]:
    """The problems loading a config folder with these topics reports, each with the
    topics file named by its name only."""
    from aggregator.config import load_config

    folder = write_config(
        tmp_path / "cfg", sources="sources:\n  - {id: s, name: S, url: https://s.org/f}\n",
        topics=topics,
    )  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        load_config(folder)
    topics_file = str(folder / "topics.yaml")
    return [str(p).replace(topics_file, "topics.yaml") for p in raised.value.problems]


def test_unscoped_terms_do_not_search_the_source_name() -> None:
    """Regression: every item of "中国纺织网 Texnet" landed in asian-markets via 中国."""
    from aggregator.categorize import judge as judge_with_name

    topic = compile_topics(
        [TopicConfig.model_validate({"slug": "t", "title": "T", "include": ["中国"]})]
    )[0]
    assert not judge_with_name(item("义乌展销会开幕"), topic, "中国纺织网 Texnet").belongs
    scoped = compile_topics(
        [TopicConfig.model_validate({"slug": "t", "title": "T", "include": ["source:中国"]})]
    )[0]
    assert judge_with_name(item("义乌展销会开幕"), scoped, "中国纺织网 Texnet").belongs


#: (term, text, whether the term occurs in the text).
WORD_CASES = [
    ("industrial park", "Two industrial parks open", True),
    ("industrial park", "Industrial parking rules", True),  # stems: park, parking
    ("=industrial park", "Industrial parking rules", False),  # as written
    ("=industrial park", "Two industrial park plans", True),
    ("export", "Exporters and exporting firms", True),
    ("brand", "A brand-new store", False),  # a compound is its head ("new")
    ("brand-new", "A brand-new store", True),  # and itself
    ("Xinjiang", "Xinjiang-linked cotton", True),  # and its capitalised parts
    ("knitting machine", "a knitting machine maker", True),
    ("box", "new boxes", True),  # plural "es"
    ("Industry 4.0", "an Industry 4.0 programme", True),
    ("Industry 4.0", "an Industry 4.01 programme", False),
    ("H&M", "H&M opens stores", True),
    ("PTA", "PTA价格上涨", True),  # a Latin word beside Chinese text
    ("棉花", "郑州棉花期货", True),
    ("5G工厂", "建设5g工厂", True),
    ("wool", "woollen mills", False),
    ("cotton price", "cotton, price", True),  # punctuation between the words
    ("knitting machine", "a knitting-machine maker", True),  # a compound split
    ("fast fashion", "an ultra-fast-fashion penalty", True),
    ("ultra", "an ultra-fast-fashion penalty", False),  # not a head part
    # An acronym is compared as written, so its stem meets no word ("Leeds" -> "leed"),
    # but the press also writes it in the plural and, from four letters, as a name.
    ("LEED", "a store in Leeds", False),
    ("LEED", "a LEED Gold mill", True),
    ("IPO", "two IPOs this year", True),
    ("VAT", "a dyeing vat", False),
    ("VAT", "a VAT cut", True),
    ("ASEAN", "Asean ministers met", True),
    ("OEKO-TEX", "Oeko-Tex certified yarn", True),
    ("PM MITRA", "seven PM MITRA parks", True),
    # Snowball also takes off derivations that change the sense; those stay apart.
    ("designer", "a designated park", False),
    ("designer", "two designers designed it", True),
    ("fabric", "a steel fabrication shop", False),
    ("production", "new products", False),
    ("fair", "fairly priced", False),
    ("collection", "collective bargaining", False),
    ("authorities", "the port authority", True),
    ("designation", "three designations", True),
    ("spinning", "spinning mills", True),
]


@pytest.mark.parametrize(("term", "text", "expected"), WORD_CASES)
def test_word_matching(term: str, text: str, expected: bool) -> None:
    assert parse_term(term).search(FieldText(text)) is expected


@pytest.mark.parametrize(("term", "text", "expected"), WORD_CASES)
def test_the_term_index_finds_what_each_term_finds(term: str, text: str, expected: bool) -> None:
    """Categorizing finds every term of a taxonomy in one scan (``TermIndex``); it must
    agree with the term tried alone. The index of word starts it replaced missed a
    phrase written as a compound ("fast-fashion")."""
    compiled = parse_term(term)
    fields = index_fields({"title": text, "summary": f"The story. {text}"})
    found = TermIndex([compiled, parse_term("unrelated"), parse_term("其他")]).hits(fields)
    assert (id(compiled) in found) is expected
    if expected:
        assert found[id(compiled)] == ["title", "summary"]


@pytest.mark.parametrize(
    "text",
    [
        "A well-known Xinjiang-linked mill bought knitting-machines, knitting-machines.",
        "state-of-the-art -leading trailing- a--b x-ray X-Ray Water-Jet Looms",
        "no compounds here at all",
        "-",
        "棉花-价格 and cotton-price",
    ],
)
def test_compound_forms_are_the_words_split_and_their_heads(text: str) -> None:
    """The split and head forms are built from the hyphens alone (only the compounds
    are stemmed again); they must equal the forms made from every word."""
    field = FieldText(text)
    written = field.tokens(CASE)
    assert field.compounds(CASE) == [w for w in written if "-" in w]
    assert field.compounds(EXACT) == [w.lower() for w in written if "-" in w]
    parts = field.joined(EXACT).replace("-", " ").split()
    assert field.joined(STEM, SPLIT) == f" {' '.join(_stem(parts))} "
    heads = _head_parts([w for w in written if "-" in w])
    assert field.head_parts(CASE) == heads
    assert field.head_parts(STEM) == _stem([h.lower() for h in heads])
    assert field.distinct(STEM) == set(field.tokens(STEM)) | set(_stem([h.lower() for h in heads]))


def test_an_ignored_phrase_hides_its_words_from_every_topic() -> None:
    """The scope gate's ``ignore`` phrases are other senses of textile words ("steel
    mill"): the words inside them count for no topic, while the item is not vetoed
    (a textile item that also names a steel mill keeps its textile words)."""
    sets = {"scope": {"threshold": 1, "include": ["mill", "textile", "棉花"],
                      "ignore": ["steel mill", "fibre optic", "棉花糖"]}}  # fmt: skip
    rules = {"include": ["mill", "fibre", "棉花"]}
    steel = verdict(item("Power tariff hike hits steel mills"), sets, **rules)
    assert not steel.belongs and steel.scope is not None and not steel.scope.in_scope
    assert steel.hits == () and "not counted, inside steel mill" in steel.scope.reason()
    assert not verdict(item("Fibre optic cable plant opens"), sets, **rules).belongs
    assert not verdict(item("棉花糖节开幕"), sets, **rules).belongs
    # The same word outside the phrase still counts, and so does the rest of the item.
    both = verdict(item("Steel mill and textile mill share a power line"), sets, **rules)
    assert both.belongs and [h.term for h in both.hits] == ["mill"]
    assert verdict(item("棉花糖厂旁的棉花仓库"), sets, **rules).belongs
    assert verdict(item("Textile mill buys looms", "A steel mill nearby."), sets, **rules).belongs


def test_categorize_and_explain_agree_on_ignored_phrases() -> None:
    from aggregator.categorize import categorize, verdicts

    sets = {"scope": RuleSet.model_validate(
        {"threshold": 1, "include": ["mill"], "ignore": ["steel mill"]})}  # fmt: skip
    topics = compile_topics(
        [TopicConfig.model_validate({"slug": "t", "title": "T", "include": ["mill"]})], sets
    )
    for title in ("Steel mills cut output", "Spinning mill and steel mill merge"):
        found = categorize(item(title), topics)
        assert bool(found) == verdicts(item(title), topics)[0].belongs == ("Spinning" in title)


def test_ignore_is_for_the_scope_gate_only(tmp_path: Path) -> None:
    topics = """\
rule_sets:
  metals:
    ignore: [steel mill]
topics:
  - {slug: t, title: T, include: [mill], use: [metals]}
"""
    assert _config_problems(tmp_path, topics) == [
        "topics.yaml:3: rule_sets.metals.ignore: ignore applies to every topic, so only the "
        "rule set 'scope' (the textile-scope gate) may have it"
    ]


def test_an_ignored_compound_hides_its_parts_too() -> None:
    """A compound counts as its head ("heavy-duty" as "duty"): an ignore phrase that is
    a compound hides that part as well, and only as often as the compound occurs."""
    sets = {"scope": {"threshold": 1, "include": ["trucks", "textile"],
                      "ignore": ["heavy-duty", "old-fashioned"]}}  # fmt: skip
    rules = {"include": ["duty", "fashion"]}
    assert verdict(item("Heavy-duty trucks for textile mills"), sets, **rules).hits == ()
    assert verdict(item("An old-fashioned textile shop"), sets, **rules).hits == ()
    found = verdict(item("Heavy-duty trucks face anti-dumping duty"), sets, **rules)
    assert [h.term for h in found.hits] == ["duty"]  # "anti-dumping duty" is not hidden
    twice = verdict(item("Heavy-duty and heavy-duty trucks, a low-duty textile"), sets, **rules)
    assert [h.term for h in twice.hits] == ["duty"]  # the third compound's "duty"


def test_an_ignored_phrase_hides_the_phrases_inside_split_compounds() -> None:
    """A phrase is also found in compounds split ("carbon-fibre" as "carbon fibre"); an
    ignore phrase found there hides it there too, so a carbon-fibre bike is no textile
    evidence while a carbon-fibre fabric still is."""
    sets = {"scope": {"threshold": 1, "include": ["carbon fibre", "fabric"],
                      "ignore": ["carbon fibre bike"]}}  # fmt: skip
    rules = {"include": ["carbon fibre"]}
    assert not verdict(item("Carbon-fibre bike sales slow"), sets, **rules).belongs
    found = verdict(item("Carbon-fibre bike maker buys a carbon-fibre fabric mill"), sets, **rules)
    assert found.belongs and [h.term for h in found.hits] == ["carbon fibre"]
