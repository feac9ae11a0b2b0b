"""The catalogue's vocabulary: the category tree with its brands, title words, price bands and
complements, and the words merchants' names are made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """Vocabulary and economics of one leaf category (static data, not randomised)."""

    department: str
    slug: str
    name: str
    weight: float  # share of catalogue and of browsing
    price_median: float
    price_sigma: float  # log-normal spread
    nouns: tuple[tuple[str, str], ...]  # (English, Chinese)
    qualifiers: tuple[str, ...]
    variants: tuple[str, ...]
    brands: tuple[tuple[str, str | None], ...]  # (English, Chinese name if any)
    tags: tuple[str, ...]
    complements: tuple[str, ...] = ()  # slugs bought together with this category


COLOURS: Final = ("black", "white", "navy", "rose", "sage", "sand", "grey", "red")
COLOUR_DEPARTMENTS: Final = frozenset({"fashion", "electronics", "sports"})

# fmt: off
# (a data table: one category per block reads better than one value per line)
SPECS: Final[tuple[CategorySpec, ...]] = (
    CategorySpec(
        "electronics", "phones", "Phones", 1.4, 450.0, 0.5,
        (("Smartphone", "智能手机"), ("5G Phone", "5G手机")),
        ("Pro", "Lite", "Ultra", "Max", "Mini", "Plus"),
        ("128GB", "256GB", "512GB"),
        (("Apple", None), ("Samsung", None), ("Huawei", "华为"), ("Xiaomi", "小米"),
         ("OPPO", None), ("Google", None), ("OnePlus", None)),
        ("5g", "dual-sim", "oled", "fast-charging"),
        ("phone-cases", "chargers", "headphones"),
    ),
    CategorySpec(
        "electronics", "phone-cases", "Phone Cases", 1.0, 15.0, 0.4,
        (("Phone Case", "手机壳"), ("MagSafe Case", "磁吸手机壳")),
        ("Clear", "Rugged", "Slim", "Leather", "Silicone"),
        ("for 6.1-inch", "for 6.7-inch"),
        (("Spigen", None), ("OtterBox", None), ("ESR", None), ("Casetify", None),
         ("Baseus", "倍思")),
        ("shockproof", "magsafe", "slim"),
        ("phones",),
    ),
    CategorySpec(
        "electronics", "headphones", "Headphones", 1.1, 80.0, 0.7,
        (("Wireless Earbuds", "无线耳机"), ("Over-Ear Headphones", "头戴式耳机")),
        ("Noise-Cancelling", "Sport", "Studio", "Bass"),
        ("Gen 2", "2025 Edition"),
        (("Sony", None), ("Bose", None), ("Sennheiser", None), ("JBL", None),
         ("Soundcore", None), ("Edifier", "漫步者")),
        ("wireless", "anc", "bluetooth"),
        ("phones",),
    ),
    CategorySpec(
        "electronics", "chargers", "Chargers", 0.8, 22.0, 0.4,
        (("Fast Charger", "快充充电器"), ("Power Bank", "充电宝")),
        ("65W", "30W", "GaN", "Compact"),
        ("USB-C", "2-Port"),
        (("Anker", None), ("Baseus", "倍思"), ("Belkin", None), ("Ugreen", "绿联")),
        ("usb-c", "gan", "travel"),
        ("phones", "laptops"),
    ),
    CategorySpec(
        "electronics", "laptops", "Laptops", 0.8, 950.0, 0.4,
        (("Laptop", "笔记本电脑"), ("Ultrabook", "轻薄本")),
        ("14-inch", "16-inch", "Gaming", "Air"),
        ("16GB RAM", "32GB RAM", "1TB SSD"),
        (("Lenovo", "联想"), ("Dell", None), ("HP", None), ("Apple", None), ("ASUS", None)),
        ("ssd", "backlit-keyboard", "lightweight"),
        ("chargers", "headphones"),
    ),
    CategorySpec(
        "electronics", "smartwatches", "Smartwatches", 0.7, 220.0, 0.5,
        (("Smartwatch", "智能手表"), ("Fitness Watch", "运动手表")),
        ("GPS", "Active", "Classic", "Series 9"),
        ("41mm", "45mm"),
        (("Apple", None), ("Garmin", None), ("Huawei", "华为"), ("Amazfit", None),
         ("Samsung", None)),
        ("heart-rate", "gps", "waterproof"),
        ("chargers",),
    ),
    CategorySpec(
        "fashion", "dresses", "Dresses", 1.5, 45.0, 0.5,
        (("Midi Dress", "连衣裙"), ("Wrap Dress", "裹身裙"), ("Maxi Dress", "长裙")),
        ("Floral", "Linen", "Satin", "Pleated", "Summer"),
        ("Size S", "Size M", "Size L"),
        (("Zara", None), ("H&M", None), ("Mango", None), ("Reformation", None),
         ("Uniqlo", None)),
        ("summer", "party", "office"),
        ("handbags", "sunglasses"),
    ),
    CategorySpec(
        "fashion", "sneakers", "Sneakers", 1.4, 95.0, 0.4,
        (("Running Sneakers", "运动鞋"), ("Court Sneakers", "板鞋")),
        ("Air", "Retro", "Ultra", "Classic", "Trail"),
        ("EU 40", "EU 42", "EU 44"),
        (("Nike", None), ("Adidas", None), ("New Balance", None), ("Li-Ning", "李宁"),
         ("Anta", "安踏")),
        ("running", "streetwear", "breathable"),
        ("t-shirts", "jeans"),
    ),
    CategorySpec(
        "fashion", "handbags", "Handbags", 0.9, 75.0, 0.7,
        (("Tote Bag", "手提包"), ("Crossbody Bag", "斜挎包")),
        ("Leather", "Quilted", "Mini", "Canvas"),
        ("",),
        (("Coach", None), ("Michael Kors", None), ("Kate Spade", None), ("Longchamp", None)),
        ("leather", "everyday", "gift"),
        ("dresses",),
    ),
    CategorySpec(
        "fashion", "jeans", "Jeans", 1.0, 55.0, 0.35,
        (("Slim Jeans", "修身牛仔裤"), ("Straight Jeans", "直筒牛仔裤")),
        ("Stretch", "Vintage", "High-Rise", "Relaxed"),
        ("W30", "W32", "W34"),
        (("Levi's", None), ("Wrangler", None), ("Lee", None), ("Uniqlo", None)),
        ("denim", "casual"),
        ("t-shirts", "sneakers"),
    ),
    CategorySpec(
        "fashion", "t-shirts", "T-Shirts", 1.2, 18.0, 0.4,
        (("Cotton T-Shirt", "纯棉T恤"), ("Graphic Tee", "印花T恤")),
        ("Oversized", "Basic", "Organic", "Crew-Neck"),
        ("Size M", "Size L", "2-Pack"),
        (("Uniqlo", None), ("Gap", None), ("H&M", None), ("Champion", None)),
        ("cotton", "casual", "basics"),
        ("jeans",),
    ),
    CategorySpec(
        "fashion", "sunglasses", "Sunglasses", 0.6, 35.0, 0.8,
        (("Sunglasses", "太阳镜"), ("Aviator Sunglasses", "飞行员墨镜")),
        ("Polarized", "Round", "Cat-Eye", "Square"),
        ("UV400",),
        (("Ray-Ban", None), ("Oakley", None), ("Gentle Monster", None)),
        ("uv-protection", "summer"),
        ("dresses",),
    ),
    CategorySpec(
        "beauty", "skincare", "Skincare", 1.3, 25.0, 0.6,
        (("Moisturizer", "面霜"), ("Vitamin C Serum", "精华液"), ("Cleanser", "洁面乳")),
        ("Hydrating", "Gentle", "Brightening", "Daily"),
        ("50ml", "100ml", "200ml"),
        (("CeraVe", None), ("La Roche-Posay", None), ("The Ordinary", None),
         ("Pechoin", "百雀羚"), ("Kiehl's", None)),
        ("sensitive-skin", "fragrance-free", "vegan"),
        ("makeup",),
    ),
    CategorySpec(
        "beauty", "makeup", "Makeup", 1.2, 18.0, 0.5,
        (("Lipstick", "口红"), ("Foundation", "粉底液"), ("Mascara", "睫毛膏")),
        ("Matte", "Long-Wear", "Velvet", "Waterproof"),
        ("Shade 01", "Shade 03", "Shade 07"),
        (("Maybelline", None), ("L'Oréal", None), ("Perfect Diary", "完美日记"),
         ("Fenty Beauty", None), ("NARS", None)),
        ("cruelty-free", "long-lasting"),
        ("skincare",),
    ),
    CategorySpec(
        "beauty", "fragrance", "Fragrance", 0.6, 70.0, 0.5,
        (("Eau de Parfum", "香水"), ("Eau de Toilette", "淡香水")),
        ("Floral", "Woody", "Citrus", "Amber"),
        ("50ml", "100ml"),
        (("Chanel", None), ("Dior", None), ("Jo Malone", None), ("Le Labo", None)),
        ("gift", "long-lasting"),
        (),
    ),
    CategorySpec(
        "home", "cookware", "Cookware", 0.8, 55.0, 0.6,
        (("Dutch Oven", "铸铁锅"), ("Frying Pan", "炒锅"), ("Saucepan", "汤锅")),
        ("Cast-Iron", "Non-Stick", "Enamelled", "Stainless"),
        ("24cm", "28cm"),
        (("Le Creuset", None), ("Lodge", None), ("Tefal", None), ("Supor", "苏泊尔")),
        ("induction", "dishwasher-safe"),
        ("coffee",),
    ),
    CategorySpec(
        "home", "coffee", "Coffee", 0.9, 14.0, 0.4,
        (("Coffee Beans", "咖啡豆"), ("Coffee Capsules", "咖啡胶囊")),
        ("Espresso", "Dark Roast", "Single-Origin", "Decaf"),
        ("250g", "1kg", "50-Pack"),
        (("Lavazza", None), ("Illy", None), ("Starbucks", None), ("Nespresso", None)),
        ("arabica", "fair-trade"),
        ("cookware",),
    ),
    CategorySpec(
        "home", "bedding", "Bedding", 0.7, 65.0, 0.5,
        (("Duvet Cover", "被套"), ("Sheet Set", "床单套装")),
        ("Linen", "Percale", "Sateen", "Washed-Cotton"),
        ("Queen", "King"),
        (("Brooklinen", None), ("Parachute", None), ("IKEA", None), ("Muji", "无印良品")),
        ("breathable", "organic"),
        (),
    ),
    CategorySpec(
        "sports", "yoga-mats", "Yoga Mats", 0.6, 32.0, 0.4,
        (("Yoga Mat", "瑜伽垫"),),
        ("Non-Slip", "Travel", "Thick", "Cork"),
        ("6mm", "4mm"),
        (("Lululemon", None), ("Manduka", None), ("Gaiam", None), ("Keep", "Keep")),
        ("non-slip", "eco"),
        ("water-bottles",),
    ),
    CategorySpec(
        "sports", "water-bottles", "Water Bottles", 0.6, 22.0, 0.4,
        (("Water Bottle", "保温杯"), ("Insulated Tumbler", "保温杯")),
        ("Insulated", "Wide-Mouth", "Leakproof"),
        ("750ml", "1L"),
        (("Hydro Flask", None), ("Stanley", None), ("Nalgene", None), ("CamelBak", None)),
        ("bpa-free", "insulated"),
        ("yoga-mats",),
    ),
)

MERCHANT_PREFIXES: Final = (
    "Bright", "Golden", "Urban", "Blue Harbor", "Maple", "Lucky Panda", "Jade", "Sunrise",
    "Silver Fox", "Northwind", "Red Lantern", "Cloud Nine", "Evergreen", "Little Tiger",
)
MERCHANT_SUFFIXES: Final = ("Store", "Outlet", "Boutique", "Direct", "Trading Co.", "Shop")
# fmt: on

# ------------------------------------------------------------------------------------------------
# The world


def department_of(slug: str) -> str:
    """The department of the category whose slug is ``slug`` ("phones" → "electronics")."""
    return next(s.department for s in SPECS if s.slug == slug)
