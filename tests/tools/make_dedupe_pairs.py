"""Writes tests/data/dedupe-pairs.yaml: labelled item pairs for near-duplicate detection.

Base stories are hand-written, invented textile news in families on one subject (weekly
cotton reports for different weeks, cashmere-town announcements of different years,
one company's different news), so that pairs inside a family are hard negatives. Each
story is reposted the way portals repost: headline rewritten or prefixed, first
paragraph trimmed, sentences reordered, portal boilerplate added. Deterministic: the
same file every run.

    python tests/tools/make_dedupe_pairs.py
"""

from __future__ import annotations

import random
from itertools import combinations
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "data" / "dedupe-pairs.yaml"

# (family, title, sentences)
STORIES: list[tuple[str, str, list[str]]] = [
    (
        "cotton-weekly",
        "Cotton prices rise for a third week as Xinjiang picking lags",
        [
            "ICE cotton futures rose 1.8 cents to 71.4 cents a pound in the week to November 21.",
            "Picking in southern Xinjiang was 12 percent behind last year's pace.",
            "Spinners in Jiangsu said yarn orders for spring remained thin.",
        ],
    ),
    (
        "cotton-weekly",
        "Cotton prices slip as US export sales disappoint",
        [
            "ICE cotton futures fell 1.1 cents to 69.6 cents a pound in the week to November 14.",
            "Weekly US export sales dropped to 152,000 bales, the lowest since August.",
            "Mills in Pakistan held back purchases ahead of the new crop.",
        ],
    ),
    (
        "cotton-weekly",
        "Cotton futures flat as traders await USDA report",
        [
            "ICE cotton futures ended the week to November 7 unchanged at 70.7 cents a pound.",
            "Traders waited for the monthly WASDE estimates due on Tuesday.",
            "Indian cotton arrivals picked up in Gujarat and Maharashtra.",
        ],
    ),
    (
        "cotton-weekly",
        "Zhengzhou cotton climbs on firm yarn demand",
        [
            "Cotton futures on the Zhengzhou exchange rose 2.3 percent this week.",
            "Yarn mills in Henan and Hubei raised operating rates to 78 percent.",
            "State reserve cotton sales were suspended until further notice.",
        ],
    ),
    (
        "cashmere-town",
        "Qinghe cashmere town named national creative design demonstration park",
        [
            "The Ministry of Industry and Information Technology announced the second batch of textile and garment creative design demonstration parks.",
            "Qinghe cashmere town in Xingtai, Hebei Province, was among the seven parks selected.",
            "Qinghe is the largest cashmere processing and distribution centre in China, with revenue of 31.78 billion yuan in 2021.",
        ],
    ),
    (
        "cashmere-town",
        "Qinghe cashmere town opens international trading centre",
        [
            "A new cashmere trading centre opened in Qinghe county in May 2024.",
            "The centre houses 400 dealers of dehaired cashmere and cashmere yarn.",
            "Local officials expect annual trade of 5 billion yuan.",
        ],
    ),
    (
        "cashmere-town",
        "Ordos cashmere cluster launches traceability platform",
        [
            "Cashmere producers in Ordos, Inner Mongolia, launched a platform that traces fibre from herder to sweater.",
            "Thirty companies joined the first phase.",
            "Brands in Europe have asked for proof of origin for goat cashmere.",
        ],
    ),
    (
        "cashmere-town",
        "Qinghe holds 20th cashmere fair with record exhibitors",
        [
            "The 20th Qinghe international cashmere fair opened on September 18 with 650 exhibitors.",
            "Buyers from Italy and Japan signed contracts for cashmere yarn.",
            "Organisers said online sales during the fair passed 300 million yuan.",
        ],
    ),
    (
        "inditex",
        "Inditex first-half net profit rises 10 percent",
        [
            "The owner of Zara reported net profit of 2.8 billion euros for the first half.",
            "Sales rose 7 percent at constant exchange rates.",
            "The group said autumn collections had started well.",
        ],
    ),
    (
        "inditex",
        "Inditex to open 10 new Zara stores in India",
        [
            "Inditex will open ten Zara stores in Indian cities over the next two years with its local partner.",
            "The stores will follow the group's latest larger format.",
            "India is one of the fastest growing markets for the Spanish retailer.",
        ],
    ),
    (
        "inditex",
        "Inditex tests clothing take-back boxes in 300 stores",
        [
            "Customers can drop used clothes in collection boxes at 300 Zara stores in Europe.",
            "The garments will be sorted for reuse and recycling.",
            "The pilot is part of the group's circularity targets.",
        ],
    ),
    (
        "bangladesh-exports",
        "Bangladesh apparel exports rise 9 percent in October",
        [
            "Bangladesh's readymade garment exports reached 3.9 billion dollars in October, up 9 percent.",
            "Knitwear led the growth while woven exports were flat.",
            "BGMEA warned that gas shortages could hurt December shipments.",
        ],
    ),
    (
        "bangladesh-exports",
        "Bangladesh garment exports to EU fall in September",
        [
            "Garment exports from Bangladesh to the European Union fell 4 percent in September.",
            "Exporters blamed weaker demand in Germany and France.",
            "Shipments to the United States rose slightly.",
        ],
    ),
    (
        "bangladesh-exports",
        "Bangladesh garment makers demand lower gas tariff",
        [
            "The BGMEA asked the government to cut the gas tariff for garment factories.",
            "The association said energy costs had risen 40 percent in a year.",
            "Several dyeing units have reduced shifts.",
        ],
    ),
    (
        "vietnam",
        "Vietnam textile exports on track for 44 billion dollars",
        [
            "Vietnam's textile and garment exports are expected to reach 44 billion dollars this year.",
            "VITAS said orders from the United States recovered in the second half.",
            "Labour shortages remain a concern in the south.",
        ],
    ),
    (
        "vietnam",
        "Vietnamese garment workers get 6 percent wage rise",
        [
            "The minimum wage in Vietnam will rise 6 percent from July.",
            "Garment factories in Binh Duong say costs will rise.",
            "Unions had asked for a larger increase.",
        ],
    ),
    (
        "machinery",
        "Karl Mayer unveils warp knitting machine with camera inspection",
        [
            "Karl Mayer presented a tricot machine that detects fabric faults with a camera system.",
            "The machine stops before a defect spreads across the fabric.",
            "Deliveries start in the spring.",
        ],
    ),
    (
        "machinery",
        "Rieter reports strong orders for compact spinning",
        [
            "Rieter said order intake rose 18 percent in the third quarter.",
            "Demand came mainly from India and Turkey.",
            "The company kept its full-year guidance.",
        ],
    ),
    (
        "machinery",
        "Trützschler opens nonwovens technology centre",
        [
            "Trützschler opened a technology centre for nonwovens in Mönchengladbach.",
            "Customers can run trials on card and spunlace lines.",
            "The centre cost 12 million euros.",
        ],
    ),
    (
        "policy",
        "US extends Section 301 tariffs on Chinese apparel",
        [
            "The US Trade Representative kept Section 301 tariffs on apparel and home textiles from China.",
            "Industry groups had asked for exclusions on some fabrics.",
            "The tariffs will be reviewed again next year.",
        ],
    ),
    (
        "policy",
        "EU agrees extended producer responsibility for textiles",
        [
            "EU member states must set up producer responsibility schemes for textiles.",
            "Brands will pay fees for the collection and sorting of used clothing.",
            "The rules apply from 2028.",
        ],
    ),
    (
        "policy",
        "India extends RoDTEP export rebate for garments",
        [
            "India extended the RoDTEP export rebate scheme for apparel and made-ups until March 2028.",
            "AEPC welcomed the decision.",
            "Exporters had warned of lost orders without the rebate.",
        ],
    ),
    (
        "nonwovens",
        "Welspun starts spunbond nonwovens line in Gujarat",
        [
            "Welspun commissioned a spunbond line in Gujarat with 18,000 tonnes of annual capacity.",
            "The line makes hygiene-grade nonwovens for diapers.",
            "The investment was 450 crore rupees.",
        ],
    ),
    (
        "nonwovens",
        "German meltblown maker files for insolvency",
        [
            "A Saxony-based maker of meltblown filtration media filed for insolvency.",
            "The company blamed high energy costs.",
            "Production continues while an administrator looks for a buyer.",
        ],
    ),
    (
        "nonwovens",
        "Nonwovens output in North America hits record",
        [
            "INDA said nonwovens output in North America reached a record 5.2 million tonnes.",
            "Wipes and hygiene products drove growth.",
            "Capacity additions are planned in Texas and Georgia.",
        ],
    ),
    (
        "wool",
        "Merino wool prices firm at Sydney auction",
        [
            "The Eastern Market Indicator rose 18 cents at the Sydney wool sale.",
            "Chinese topmakers were the main buyers of fine merino.",
            "The offering was smaller than expected.",
        ],
    ),
    (
        "wool",
        "Wool prices ease as Chinese buyers step back",
        [
            "The Eastern Market Indicator fell 12 cents at the Melbourne wool sale.",
            "Chinese buyers reduced purchases ahead of the holiday.",
            "Crossbred wool was hit hardest.",
        ],
    ),
    (
        "fair",
        "ITMA Asia sells out exhibition space in Shanghai",
        [
            "Organisers of ITMA Asia and CITME said exhibition space in Shanghai is sold out.",
            "About 1,600 exhibitors will show textile machinery.",
            "The fair runs from October 28 to 31.",
        ],
    ),
    (
        "fair",
        "Heimtextil 2027 expects 3,000 exhibitors",
        [
            "Heimtextil in Frankfurt expects 3,000 exhibitors in January.",
            "A new hall will show recycled and bio-based materials.",
            "Visitor registration opens next week.",
        ],
    ),
    (
        "labour",
        "Garment workers strike over wages in Dhaka",
        [
            "Thousands of garment workers in Dhaka walked out demanding a higher minimum wage.",
            "Police used tear gas in Ashulia.",
            "Factory owners said they cannot pay more without higher prices from brands.",
        ],
    ),
    (
        "labour",
        "Factory fire in Karachi kills 12 garment workers",
        [
            "A fire at a garment factory in Karachi killed 12 workers.",
            "Survivors said exits were locked.",
            "The government ordered safety inspections of textile factories.",
        ],
    ),
    (
        "sustainability",
        "Textile-to-textile recycling plant opens in Sweden",
        [
            "A plant in Sweden began turning worn cotton clothes into pulp for new fibres.",
            "It can process 60,000 tonnes of textile waste a year.",
            "Fashion brands have signed offtake agreements.",
        ],
    ),
    (
        "sustainability",
        "Lenzing expands lyocell capacity in Thailand",
        [
            "Lenzing added a second lyocell line at its Prachinburi site in Thailand.",
            "The fibre is used in denim and home textiles.",
            "The company said the line runs on renewable energy.",
        ],
    ),
    (
        "fibre-prices",
        "Polyester staple fibre prices ease in Asia",
        [
            "Polyester staple fibre offers in Asia slipped 1 to 2 percent this week.",
            "PTA and MEG feedstock costs softened.",
            "Spinners bought only for immediate needs.",
        ],
    ),
    (
        "fibre-prices",
        "Viscose staple fibre makers raise prices",
        [
            "Viscose staple fibre producers in China raised list prices by 200 yuan a tonne.",
            "Dissolving pulp costs rose for a second month.",
            "Downstream yarn mills accepted part of the increase.",
        ],
    ),
    (
        "brands",
        "Bosideng opens flagship store in Milan",
        [
            "Chinese down jacket brand Bosideng opened a three-floor flagship store in Milan.",
            "The store is its second in Europe after London.",
            "The brand plans more openings next year.",
        ],
    ),
    (
        "brands",
        "Shein files for London listing",
        [
            "Fast fashion retailer Shein submitted a prospectus for a listing in London.",
            "The company did not say how much it plans to raise.",
            "Its earlier plan to list in New York was dropped.",
        ],
    ),
    (
        "clusters",
        "Keqiao fabric market turnover rises in November",
        [
            "Turnover at China Textile City in Keqiao rose 5 percent in November.",
            "Wool blends and functional fabrics were in demand.",
            "Prices of cotton poplin were stable.",
        ],
    ),
    (
        "clusters",
        "Shengze dyeing mills finish wastewater upgrade",
        [
            "Dyeing mills in Shengze completed an upgrade of their wastewater treatment.",
            "Effluent discharge fell by a fifth.",
            "Three mills were named national green factories.",
        ],
    ),
    (
        "clusters",
        "Humen garment cluster hosts sourcing week",
        [
            "More than 300 buyers met garment makers at the Humen sourcing week.",
            "Women's wear made up most of the orders.",
            "Livestreaming sales rooms were set up for small brands.",
        ],
    ),
    (
        "zh-cotton",
        "郑棉期货主力合约本周上涨",
        [
            "郑州商品交易所棉花期货主力合约本周上涨百分之二。",
            "新疆机采棉采收进度已过八成。",
            "纺纱企业开机率小幅回升。",
        ],
    ),
    (
        "zh-cotton",
        "储备棉轮出暂停 棉价小幅回落",
        ["国家储备棉轮出工作暂停。", "本周棉花现货价格小幅回落。", "下游纱线企业采购谨慎。"],
    ),
    (
        "zh-cashmere",
        "清河羊绒小镇入选国家级纺织服装创意设计示范园区",
        [
            "工业和信息化部公布第二批纺织服装创意设计示范园区名单。",
            "河北邢台清河羊绒小镇入选。",
            "清河是全国最大的羊绒加工集散地。",
        ],
    ),
    (
        "zh-cashmere",
        "清河羊绒交易会开幕 参展商创新高",
        [
            "第二十届清河国际羊绒交易会开幕。",
            "国内外客商签约羊绒纱线订单。",
            "交易会期间线上销售额超过三亿元。",
        ],
    ),
    (
        "zh-keqiao",
        "柯桥中国轻纺城面料成交活跃",
        [
            "绍兴柯桥中国轻纺城本周面料日均成交量环比增长百分之五。",
            "羊毛混纺和功能性面料需求较旺。",
            "棉府绸价格持稳。",
        ],
    ),
    (
        "zh-keqiao",
        "柯桥印染企业完成废水提标改造",
        [
            "柯桥印染企业完成印染废水提标改造。",
            "排放量下降五分之一。",
            "三家企业入选国家级绿色工厂。",
        ],
    ),
    (
        "zh-policy",
        "工信部发布纺织行业数字化转型典型案例",
        [
            "工业和信息化部发布纺织行业数字化转型典型案例。",
            "案例涵盖智能工厂和数字化车间。",
            "涉及纺纱织造印染和服装等环节。",
        ],
    ),
    (
        "zh-policy",
        "商务部发布纺织品服装出口数据",
        [
            "商务部数据显示前十个月纺织品服装出口同比增长。",
            "对东盟出口增幅最大。",
            "对美国出口小幅下降。",
        ],
    ),
]

# Weekly market reports written from one template: different weeks share most of their
# words, which makes them the hardest negatives (the issue's "two different weekly
# cotton price reports").
WEEKLY = [
    (
        "weekly-template",
        "Weekly cotton report: ICE futures {move} to {price} cents",
        [
            "ICE cotton futures {move} {change} cents to {price} cents a pound in the week to {date}.",
            "The Cotlook A Index stood at {index} cents.",
            "Spot trading in Asia was {mood} as spinners {action}.",
        ],
    ),
]
WEEKS = [
    {"move": "rose", "change": "1.8", "price": "71.4", "date": "November 21", "index": "80.15",
     "mood": "active", "action": "covered nearby needs"},
    {"move": "fell", "change": "1.1", "price": "69.6", "date": "November 14", "index": "78.90",
     "mood": "quiet", "action": "waited for lower prices"},
    {"move": "rose", "change": "0.4", "price": "70.7", "date": "November 7", "index": "79.35",
     "mood": "steady", "action": "bought for December shipment"},
    {"move": "fell", "change": "2.2", "price": "70.3", "date": "October 31", "index": "79.05",
     "mood": "thin", "action": "cut operating rates"},
]  # fmt: skip
STORIES += [
    (family, title.format(**week), [s.format(**week) for s in sentences])
    for family, title, sentences in WEEKLY
    for week in WEEKS
]

PREFIXES = [
    "Local Hot Spot: ",
    "Global Observation: ",
    "Industry News | ",
    "Breaking: ",
    "Market Watch: ",
]
ZH_PREFIXES = ["【纺织资讯】", "【行业动态】", "快讯：", "【地方热点】"]
BOILERPLATE = [
    "Click here to subscribe to our daily newsletter.",
    "Disclaimer: this article is reprinted from other media for the purpose of passing on more information.",
    "(source: Hebei Daily)",
    "Copyright 2026 Textile News Network. All rights reserved.",
]
ZH_BOILERPLATE = [
    "（来源：河北日报）",
    "免责声明：本文转载自其他媒体，仅供参考。",
    "更多精彩内容请关注本网。",
]
SWAPS = [("rise", "climb"), ("rises", "climbs"), ("fall", "drop"), ("falls", "drops"),
         ("opens", "launches"), ("expands", "increases"), ("percent", "%"), ("reports", "posts")]  # fmt: skip


def is_zh(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def text(sentences: list[str]) -> str:
    """Sentences as a paragraph: Chinese runs on, English gets spaces."""
    return ("" if is_zh(sentences[0]) else " ").join(sentences)


def repost(rng: random.Random, title: str, sentences: list[str], kind: int) -> tuple[str, str]:
    """One way a portal reposts a story."""
    zh = is_zh(title)
    body = list(sentences)
    if kind == 0:  # headline rewritten in Title Case with a portal prefix, boilerplate added
        title = rng.choice(ZH_PREFIXES if zh else PREFIXES) + (title if zh else title.title())
        body.append(rng.choice(ZH_BOILERPLATE if zh else BOILERPLATE))
    elif kind == 1:  # first paragraph trimmed, words swapped in the headline
        body = body[1:] if len(body) > 2 else body
        for old, new in SWAPS:
            title = title.replace(f" {old} ", f" {new} ")
        if zh:
            title = title.replace(" ", "，")
    elif kind == 2:  # sentences reordered, boilerplate in front
        body = body[1:] + body[:1]
        body.insert(0, rng.choice(ZH_BOILERPLATE if zh else BOILERPLATE))
    else:  # a new headline written from the lead, last paragraph dropped
        lead = body[0].rstrip("。.")
        title = lead[: len(lead) // 2] if zh else " ".join(lead.split()[:7])
        body = body[:-1]
    return title, text(body)


def main() -> None:
    rng = random.Random(20261126)
    pairs = []
    for family, title, sentences in STORIES:
        original = (title, text(sentences))
        for kind in range(4):
            pairs.append({"same": True, "kind": f"repost-{kind}", "family": family,
                          "a": {"title": original[0], "summary": original[1]},
                          "b": dict(zip(("title", "summary"), repost(rng, title, sentences, kind), strict=True))})  # fmt: skip
    # Hard negatives: every pair of different stories inside a family, as published and
    # as reposted, then cross-family pairs until the set is balanced.
    by_family: dict[str, list[tuple[str, list[str]]]] = {}
    for family, title, sentences in STORIES:
        by_family.setdefault(family, []).append((title, sentences))
    negatives = []
    for family, stories in by_family.items():
        for (t1, s1), (t2, s2) in combinations(stories, 2):
            for kind in (None, 0):
                b_title, b_text = (t2, text(s2)) if kind is None else repost(rng, t2, s2, kind)
                negatives.append({"same": False, "kind": "same-subject", "family": family,
                                  "a": {"title": t1, "summary": text(s1)},
                                  "b": {"title": b_title, "summary": b_text}})  # fmt: skip
    while len(negatives) < 160:
        (f1, t1, s1), (f2, t2, s2) = rng.sample(STORIES, 2)
        if f1 != f2:
            negatives.append({"same": False, "kind": "different-subject", "family": f"{f1}/{f2}",
                              "a": {"title": t1, "summary": text(s1)},
                              "b": {"title": t2, "summary": text(s2)}})  # fmt: skip
    document = {"pairs": pairs + negatives}
    header = (
        "# Generated by tests/tools/make_dedupe_pairs.py from hand-written, invented base\n"
        "# stories: reposts (same: true) and hard negatives (same: false). Do not edit.\n"
    )
    OUT.write_text(
        header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120),
        encoding="utf-8",
    )
    print(f"{OUT}: {len(pairs)} reposts, {len(negatives)} different stories")


if __name__ == "__main__":
    main()
