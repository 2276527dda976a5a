"""Language centring: take each language's mean out of a multilingual model's vectors.

Multilingual encoders place a text by its language as well as by its meaning: measured with
multilingual-e5-small on the demo catalog (EVALUATION.md "Bilingual"), a Chinese question's
nearest items were the 39 Chinese ones whatever they were about (hit@5 0.12 for Chinese
questions answered only by English items). Subtracting the mean vector of each language, then
renormalising, removes most of that component and keeps the meaning (Libovický, Rosa and Fraser,
"On the Language Neutrality of Pre-trained Multilingual Representations", 2020); the same
measurement gave hit@5 0.91 for Chinese -> English and 0.96 for English -> Chinese.

The means come from REFERENCE_PAIRS, short everyday shop and help sentences written for this
purpose in both languages (parallel, so the two means differ by language and not by topic),
encoded once per process for each kind of text (queries and passages carry different prefixes,
so their means differ). A text's mean is weighted by its share of Han characters, so a mixed
question ("a 保温杯 for tea") gets a mix. Arrays in, arrays out: no database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recommendations.ml.model_cards import TEXT_KINDS, TextKind

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LETTER = re.compile(r"\w")

REFERENCE_PAIRS = (
    ("How do I change my password?", "我怎么修改密码？"),
    ("My order has not arrived yet.", "我的订单还没到。"),
    ("I would like a refund for this item.", "我想为这件商品申请退款。"),
    ("A warm jacket for winter walks.", "冬天散步穿的保暖外套。"),
    ("This kettle boils water quickly.", "这个水壶烧水很快。"),
    ("A book for children who love animals.", "给喜欢动物的孩子看的书。"),
    ("The film is a comedy about a family.", "这部电影是一部关于家庭的喜剧。"),
    ("Wireless headphones with a long battery life.", "续航时间很长的无线耳机。"),
    ("How long does delivery take?", "送货需要多长时间？"),
    ("Can I pay in instalments?", "可以分期付款吗？"),
    ("A gentle cleanser for sensitive skin.", "适合敏感肌的温和洁面。"),
    ("A documentary about the ocean and its animals.", "一部关于海洋和海洋动物的纪录片。"),
    ("Easy recipes for a quick dinner.", "快速晚餐的简单食谱。"),
    ("The app crashes when I open it.", "我一打开应用就闪退。"),
    ("A comfortable pair of running shoes.", "一双舒适的跑鞋。"),
    ("Toys that help toddlers learn.", "帮助幼儿学习的玩具。"),
    ("I was charged the wrong amount.", "我被扣错了金额。"),
    ("Where can I find my invoice?", "我在哪里可以找到发票？"),
    ("A tent that is easy to set up.", "容易搭建的帐篷。"),
    ("Please cancel my subscription.", "请取消我的订阅。"),
    ("A thriller with a surprising ending.", "一部结局出人意料的惊悚片。"),
    ("The screen stays black after I turn it on.", "开机后屏幕一直是黑的。"),
    ("A gift for my mother's birthday.", "送给妈妈的生日礼物。"),
    ("How do I return a broken item?", "坏了的商品怎么退？"),
    ("A lamp for reading at night.", "晚上看书用的台灯。"),
    ("Beginner lessons for learning to cook.", "学做饭的入门课程。"),
    ("Is this product covered by the warranty?", "这个产品在保修范围内吗？"),
    ("A cartoon for young children.", "给小朋友看的动画片。"),
    ("I cannot sign in to my account.", "我登录不了我的账号。"),
    ("A strong backpack for travelling.", "结实耐用的旅行背包。"),
    ("Skincare for dry winter weather.", "冬季干燥天气的护肤品。"),
    ("A video that teaches simple exercises at home.", "教你在家做简单运动的视频。"),
    ("The parcel arrived damaged.", "包裹到的时候已经坏了。"),
    ("A science fiction story set in space.", "一个发生在太空的科幻故事。"),
    ("How do I talk to a real person?", "怎么联系人工客服？"),
    ("Kitchen tools for baking bread.", "烤面包用的厨房工具。"),
    ("A quiet vacuum cleaner for a small flat.", "适合小公寓的静音吸尘器。"),
    ("Can I change the delivery address?", "可以修改收货地址吗？"),
    ("A board game the whole family can play.", "全家都能玩的桌游。"),
    ("Music and stories for bedtime.", "睡前听的音乐和故事。"),
)


@dataclass(frozen=True)
class LanguageMeans:
    """Per kind of text: the mean vector of the English and of the Chinese reference sentences."""

    english: dict[str, np.ndarray]
    chinese: dict[str, np.ndarray]


def language_means(encode: Callable[[list[str], TextKind], np.ndarray]) -> LanguageMeans:
    """The reference sentences' means, from `encode(texts, kind)` (the model's own vectors)."""
    english = [english for english, _chinese in REFERENCE_PAIRS]
    chinese = [chinese for _english, chinese in REFERENCE_PAIRS]
    return LanguageMeans(
        english={kind: encode(english, kind).mean(axis=0) for kind in TEXT_KINDS},
        chinese={kind: encode(chinese, kind).mean(axis=0) for kind in TEXT_KINDS},
    )


def chinese_share(text: str) -> float:
    """The share of a text's letters that are Han characters (0.0 for a text without letters)."""
    letters = LETTER.findall(text)
    return sum(bool(HAN.match(letter)) for letter in letters) / len(letters) if letters else 0.0


def language_centred(vectors: np.ndarray, texts: list[str], kind: TextKind, means: LanguageMeans) -> np.ndarray:
    """Unit vectors with each text's language mean taken out."""
    shares = np.array([chinese_share(text) for text in texts], dtype=np.float32)[:, None]
    centred = vectors - (shares * means.chinese[kind] + (1.0 - shares) * means.english[kind])
    lengths = np.linalg.norm(centred, axis=1, keepdims=True)
    return (centred / np.maximum(lengths, 1e-12)).astype(np.float32)
