"""Build the shipped customer-support intent data (standard library only, deterministic).

    .venv/bin/python data/classify/build.py            # writes next to this script
    .venv/bin/python data/classify/build.py --out DIR  # writes into DIR instead

writes two JSONL files:

* ``texts.jsonl`` -- the messages the teacher labels: ``{"id": "t-00001", "text": ...}``. No
  label field: the classification pipeline learns from the teacher's labels, not from ours.
* ``gold.jsonl``  -- human-gold messages: ``{"id": "g-00001", "text": ..., "label": ...}``,
  ``GOLD_PER_LABEL`` per label; the label is the label of the template the message came from.

Every message is composed from hand-written material below: per label, a list of message
templates written for this project (no downloads), with ``[a|b|c]`` alternatives (``[a|]`` makes
``a`` optional; alternatives nest) and ``{slot}`` fillers (product names from several kinds of
shop, order and tracking numbers, dates, amounts in several currencies, couriers, payment
methods, plans, devices...). A message may also get a greeting, a label-neutral preamble, a
label-specific follow-up sentence and a sign-off, and a few get a register change (all
lowercase, no punctuation, typos, text-speak).

Each label's templates (and follow-ups) are split once, with the fixed seed, into disjoint train
templates (about 80%, for texts.jsonl) and gold templates (about 20%, for gold.jsonl), so the
gold set measures generalisation rather than template memorisation. A candidate message is
rejected if it exactly repeats any message already written, or is a near-duplicate (word 3-gram
shingle Jaccard >= ``NEAR_DUP``, the measure of ``potstill.teacher.diversity``, re-implemented
here so the script stays standard-library only) of a message in the same file or, for gold, of
any message in texts.jsonl; its label-specific body (template + follow-up, without greeting,
preamble and sign-off) must not near-duplicate an earlier body of the same file either.
The files are committed; the pipeline reads the JSONL, not this script.
"""

# Templates are kept one message per line, however long, so that each can be read and reviewed
# as the message it becomes: line length is not checked in this file.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261207
LABELS = ("delivery", "return", "payment", "password", "cancel", "product")
# Rows of texts.jsonl per label: roughly balanced, delivery and payment a little more common.
TEXT_COUNTS = {
    "delivery": 320,
    "return": 275,
    "payment": 305,
    "password": 260,
    "cancel": 230,
    "product": 255,
}
GOLD_PER_LABEL = 60
GOLD_FRACTION = 0.2  # share of each label's templates kept for gold.jsonl
NEAR_DUP = 0.5  # word 3-gram shingle Jaccard at or above which two messages are near-duplicates
SHINGLE = 3
MAX_CHARS = 400
# How often a message gets each optional part.
P_GREETING, P_PREAMBLE, P_FOLLOW_UP, P_CLOSER = 0.45, 0.08, 0.12, 0.42

# ---------------------------------------------------------------------------------------------
# Slot fillers
# ---------------------------------------------------------------------------------------------

APPAREL = [
    "linen shirt", "denim jacket", "wool jumper", "rain jacket", "summer dress", "hoodie",
    "puffer coat", "polo shirt", "midi skirt", "fleece", "swimsuit", "blazer", "cardigan",
    "sports bra", "parka", "jumpsuit", "t-shirt", "trench coat", "flannel shirt", "ski jacket",
    "wrap dress", "bomber jacket", "merino base layer", "knitted vest", "bathrobe",
]  # fmt: skip
SHOES = [
    "running shoes", "trainers", "ankle boots", "hiking boots", "sandals", "loafers",
    "football boots", "slippers", "walking shoes", "wellies", "court shoes", "chelsea boots",
]  # fmt: skip
GADGET = [
    "smartwatch", "Bluetooth speaker", "USB-C hub", "wireless charger", "webcam",
    "fitness tracker", "gaming headset", "mechanical keyboard", "wireless mouse", "portable SSD",
    "smart plug", "ring light", "power bank", "dash cam", "e-reader", "action camera",
    "smart doorbell", "streaming stick", "drawing tablet", "travel adapter", "soundbar",
    "baby monitor", "robot vacuum", "label printer", "security camera",
]  # fmt: skip
ELECTRIC = [
    "kettle", "blender", "air fryer", "coffee grinder", "espresso machine", "food processor",
    "stand mixer", "toaster", "rice cooker", "slow cooker", "milk frother", "bread maker",
    "juicer", "sandwich toaster",
]  # fmt: skip
COOKWARE = [
    "cast iron skillet", "stockpot", "frying pan", "saucepan set", "wok", "casserole dish",
    "griddle pan", "roasting tin", "milk pan", "saute pan",
]  # fmt: skip
KITCHENWARE = COOKWARE + [
    "water bottle", "lunch box", "travel mug", "chopping board", "knife set", "salad spinner",
    "food storage set", "mixing bowl set", "pizza stone", "baking tray",
]  # fmt: skip
KITCHEN = ELECTRIC + KITCHENWARE
CAPACITY = [
    "kettle", "rice cooker", "slow cooker", "air fryer", "stockpot", "casserole dish",
    "water bottle", "travel mug", "blender", "food processor", "lunch box", "juicer",
]  # fmt: skip
FURNITURE = [
    "office chair", "bookshelf", "standing desk", "bedside table", "shoe rack", "storage ottoman",
    "garden bench", "coffee table", "dining chair", "wardrobe", "bunk bed", "TV stand",
    "sofa bed", "bar stool", "chest of drawers",
]  # fmt: skip
TALL = ["standing desk", "office chair", "bar stool", "bunk bed", "sofa bed", "camping tent", "desk chair"]
HOME = [
    "desk lamp", "duvet cover", "rug", "mattress topper", "blackout curtain", "dog bed",
    "floor lamp", "wall mirror", "weighted blanket", "camping tent", "yoga mat", "suitcase",
    "backpack", "bike helmet", "sofa throw", "laundry basket",
] + FURNITURE  # fmt: skip
EXTRA_ITEMS = [
    "board game", "perfume", "face serum", "cookbook", "jigsaw puzzle", "leather wallet",
    "watch strap", "dog harness", "kids' scooter", "guitar stand", "set of paints", "hair dryer",
    "electric toothbrush", "plant pot", "cat tree", "doll's house",
]  # fmt: skip
SCREEN = [
    "smartwatch", "e-reader", "tablet", "laptop", "monitor", "action camera", "drawing tablet",
    "dash cam", "fitness tracker", "baby monitor", "smart display", "portable projector",
]  # fmt: skip
ITEM = APPAREL + GADGET + KITCHEN + HOME + EXTRA_ITEMS
APPLIANCE = ELECTRIC + [
    "hair dryer", "electric toothbrush", "robot vacuum", "desk fan", "oil heater", "dehumidifier",
    "air purifier", "steam iron", "electric blanket", "hair straightener",
]  # fmt: skip
ELECTRICAL = GADGET + APPLIANCE  # things that can be faulty
BATTERY = [
    "smartwatch", "Bluetooth speaker", "fitness tracker", "wireless mouse", "power bank",
    "action camera", "e-reader", "gaming headset", "baby monitor", "robot vacuum", "dash cam",
    "electric toothbrush", "cordless drill",
]  # fmt: skip
AUDIO = [
    "gaming headset", "Bluetooth speaker", "soundbar", "smart speaker", "pair of earbuds", "headset",
    "party speaker",
]  # fmt: skip
STORAGE = ["portable SSD", "e-reader", "action camera", "smartwatch", "tablet", "dash cam", "laptop", "memory card"]
SMARTHOME = [
    "smart plug", "smart doorbell", "security camera", "robot vacuum", "smart bulb",
    "smart thermostat", "smart speaker", "baby monitor", "video doorbell",
]  # fmt: skip
TOYS = [
    "board game", "jigsaw puzzle", "kids' scooter", "doll's house", "craft kit", "building set",
    "balance bike", "science kit", "bike helmet", "walkie-talkie set", "telescope", "play tent",
]  # fmt: skip
ENGRAVABLE = [
    "leather wallet", "watch strap", "water bottle", "chopping board", "travel mug", "smartwatch",
    "knife set", "photo frame", "pen set", "jewellery box",
]  # fmt: skip
DEVICE = [
    "iPhone 13", "iPhone 15 Pro", "Pixel 8", "Galaxy S23", "MacBook Air", "Windows 11 laptop",
    "iPad", "Chromebook", "Android tablet", "PS5", "Xbox Series X", "Nintendo Switch",
    "Galaxy Tab", "Dell XPS", "Surface Pro", "OnePlus 11", "iPhone SE", "Mac mini",
]  # fmt: skip
COLOURS = [
    "navy", "olive green", "black", "cream", "burgundy", "grey marl", "sand", "charcoal",
    "pastel pink", "forest green", "mustard", "sky blue", "off-white", "rust", "lilac", "khaki",
    "teal", "stone", "coral", "chocolate brown",
]  # fmt: skip
SIZES = [
    "XS", "S", "M", "L", "XL", "XXL", "size 8", "size 10", "size 12", "size 14", "size 16",
    "UK 10", "EU 38", "EU 40", "medium", "large", "small",
]  # fmt: skip
SHOE_SIZES = ["UK 5", "UK 7", "UK 9", "EU 39", "EU 41", "EU 44", "US 8", "US 10.5", "size 6", "size 11"]
MATERIALS = [
    "cotton", "polyester", "wool", "leather", "stainless steel", "bamboo", "linen",
    "recycled plastic", "oak", "silicone", "cashmere", "aluminium", "ceramic", "nylon",
]  # fmt: skip
COURIERS = [
    "UPS", "FedEx", "DHL", "USPS", "Royal Mail", "DPD", "Evri", "Canada Post", "Australia Post",
    "PostNL", "GLS", "Colissimo", "Parcelforce", "Yodel", "Hermes", "InPost",
]  # fmt: skip
COUNTRIES = [
    "Ireland", "France", "Germany", "Spain", "Italy", "the Netherlands", "Canada", "Australia",
    "New Zealand", "Norway", "Switzerland", "Poland", "Portugal", "Sweden", "Japan", "Mexico",
    "the US", "the UK", "Belgium", "Denmark", "Austria", "Singapore",
]  # fmt: skip
CITIES = [
    "Leeds", "Austin", "Lyon", "Melbourne", "Toronto", "Dublin", "Manchester", "Denver", "Glasgow",
    "Porto", "Cardiff", "Auckland", "Bristol", "Rotterdam", "Seattle", "Krakow", "Brisbane",
    "Calgary", "Nottingham", "Antwerp", "Galway", "Phoenix", "Edinburgh", "Hamburg",
]  # fmt: skip
STREETS = [
    "Elm Street", "Baker Lane", "Church Road", "Station Road", "Maple Avenue", "Victoria Street",
    "Mill Lane", "Park View", "Oak Drive", "Kings Road", "Harbour Way", "Orchard Close",
    "Willow Crescent", "High Street", "Queens Avenue", "Cedar Court",
]  # fmt: skip
PAYMETHODS = [
    "Visa", "Mastercard", "Amex", "PayPal", "Apple Pay", "Google Pay", "Klarna", "debit card",
    "credit card", "bank transfer", "gift card", "Maestro", "prepaid card", "iDEAL", "Revolut",
    "Venmo",
]  # fmt: skip
CARDS = [
    "Visa", "Mastercard", "Amex", "debit card", "credit card", "Visa debit", "business card",
    "Monzo card", "Revolut card", "Maestro card",
]  # fmt: skip
BNPL = ["Klarna", "Afterpay", "Clearpay", "Affirm", "PayPal Pay in 3", "Zip"]
CURRENCY_CODES = ["USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "JPY"]
PLANS = [
    "Premium", "Plus", "Pro", "Family", "Basic", "Student", "Gold", "Business", "Unlimited",
    "Starter", "Platinum", "Essentials", "Team", "Silver", "Deluxe",
]  # fmt: skip
SUBSCRIPTIONS = [
    "monthly membership", "annual plan", "meal kit subscription", "coffee subscription",
    "wine club membership", "streaming plan", "cloud storage plan", "magazine subscription",
    "pet food subscription", "razor subscription", "snack box subscription",
    "flower subscription", "vitamin subscription", "premium membership", "VIP club membership",
    "kids' book club", "beauty box subscription", "contact lens plan", "tea of the month club",
]  # fmt: skip
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Brave", "Opera", "Samsung Internet"]
APPS = ["iOS", "Android", "iPad", "Windows", "Mac", "Huawei"]
FIRST_NAMES = [
    "Maria", "Tom", "Aisha", "Liam", "Priya", "Jonas", "Chloe", "Mateo", "Grace", "Oliver",
    "Fatima", "Lukas", "Sophie", "Daniel", "Hannah", "Kwame", "Yuki", "Rosa", "Ben", "Ines",
    "Amir", "Ella", "Noah", "Zoe", "Samir", "Megan", "Pete", "Ana", "Connor", "Leila", "Ravi",
    "Nina", "Oscar", "Tess", "Jamal", "Freya", "Marek", "Holly", "Diego", "Ruth",
]  # fmt: skip
LAST_NAMES = [
    "Okafor", "Smith", "Novak", "Garcia", "Patel", "Muller", "O'Brien", "Rossi", "Kim", "Silva",
    "Jensen", "Murphy", "Dubois", "Kowalski", "Nguyen", "Brown", "Haddad", "Lindqvist", "Evans",
    "Moreno", "Fischer", "Walsh", "Costa", "Tanaka", "Ahmed", "Clarke",
]  # fmt: skip
AGENTS = ["Sam", "Alex", "Jo", "Chris", "Jamie", "Taylor", "Robin", "Morgan", "Kim", "Lee"]
RELATIVES = [
    "mum", "dad", "grandmother", "grandfather", "husband", "wife", "partner", "elderly neighbour",
    "son", "daughter", "aunt", "flatmate",
]  # fmt: skip
PERIODS = [
    "two weeks", "10 days", "a month", "three weeks", "over a week", "5 working days",
    "nearly two weeks", "six days", "almost a month", "12 days", "four days", "a fortnight",
]  # fmt: skip
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MERCHANTS = ["PSTL*ONLINE", "SQ *HOMEGOODS", "PP*SHOPCO", "WWW.STORE-PAY", "STRIPE*SHOP", "ADYEN*RETAIL"]
SHOPS = ["Northfield", "Brightbox", "Larder & Co", "Kettle Lane", "Urbanwear", "Homestead", "Pixel Corner"]
NUMBER_WORDS = ["two", "three", "four", "five", "six", "eight", "ten", "twelve"]
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _order(r: random.Random) -> str:
    k = r.randrange(5)
    if k == 0:
        return f"#{r.randint(10000, 999999)}"
    if k == 1:
        return f"ORD-{r.randint(100000, 999999)}"
    if k == 2:
        return f"{r.choice(LETTERS)}{r.choice(LETTERS)}{r.randint(1000, 99999)}"
    if k == 3:
        return f"{r.randint(100, 999)}-{r.randint(1000000, 9999999)}"
    return f"#{r.choice(LETTERS)}{r.randint(100000, 9999999)}"


def _tracking(r: random.Random) -> str:
    k = r.randrange(4)
    if k == 0:
        return "1Z" + "".join(r.choice("0123456789" + LETTERS) for _ in range(16))
    if k == 1:
        return "".join(r.choice("0123456789") for _ in range(12))
    if k == 2:
        return f"{r.choice(LETTERS)}{r.choice(LETTERS)}{r.randint(100000000, 999999999)}GB"
    return f"JD{r.randint(10**15, 10**16 - 1)}"


def _date(r: random.Random) -> str:
    day, month = r.randint(1, 28), r.choice(MONTHS)
    k = r.randrange(6)
    if k == 0:
        return f"{month} {day}"
    if k == 1:
        return f"{_ordinal(day)} {month}"
    if k == 2:
        return f"the {_ordinal(day)}"
    if k == 3:
        return f"{r.choice(WEEKDAYS)} the {_ordinal(day)}"
    if k == 4:
        return f"{day}/{MONTHS.index(month) + 1:02d}"
    return f"{month} {_ordinal(day)}"


def _price(r: random.Random) -> str:
    k = r.randrange(10)
    if k < 4:
        return f"{r.randint(3, 60)}.{r.choice(['99', '50', '00', '95', '49'])}"
    if k < 7:
        return f"{r.randint(60, 400)}.{r.choice(['00', '99', '90', '25'])}"
    if k < 9:
        return str(r.randint(5, 250))
    return f"{r.randint(1, 2)},{r.randint(100, 999)}.00"


def _currency(r: random.Random):
    """Return a function price -> amount text, in one currency (kept for the whole message)."""
    style = r.choice(["$", "€", "£", "USD", "EUR", "GBP", "CA$", "A$", "CHF", "kr"])
    if style in ("$", "€", "£", "CA$", "A$"):
        return lambda p: f"{style}{p}"
    return lambda p: f"{p} {style}"


def _time(r: random.Random) -> str:
    if r.random() < 0.5:
        return f"{r.randint(1, 12)}{r.choice(['am', 'pm'])}"
    return f"{r.randint(7, 21)}:{r.choice(['00', '15', '30', '45', '05', '20', '40'])}"


def _postcode(r: random.Random) -> str:
    if r.random() < 0.5:
        return str(r.randint(10000, 99999))
    return (
        f"{r.choice(LETTERS)}{r.choice(LETTERS)}{r.randint(1, 19)} "
        f"{r.randint(1, 9)}{r.choice(LETTERS)}{r.choice(LETTERS)}"
    )


def _email(r: random.Random, first: str | None = None) -> str:
    first = (first or r.choice(FIRST_NAMES)).lower()
    last = r.choice(LAST_NAMES).lower().replace("'", "")
    sep = r.choice([".", "_", "", "."])
    return f"{first}{sep}{last}{r.choice(['', str(r.randint(1, 99))])}@example.{r.choice(['com', 'org', 'net'])}"


def _phone(r: random.Random) -> str:
    return f"0{r.randint(7000, 7999)} {r.randint(100000, 999999)}"


def _height(r: random.Random) -> str:
    if r.random() < 0.5:
        return f"{r.randint(152, 193)} cm"
    return f"{r.randint(5, 6)} foot {r.randint(0, 11)}"


GENERATED = {
    "order": _order,
    "tracking": _tracking,
    "date": _date,
    "time": _time,
    "postcode": _postcode,
    "email": _email,
    "phone": _phone,
    "height": _height,
    "street": lambda r: f"{r.randint(1, 240)} {r.choice(STREETS)}",
    "last4": lambda r: f"{r.randint(0, 9999):04d}",
    "errcode": lambda r: r.choice(["E", "ERR-", "code ", "PAY", "AUTH-"]) + str(r.randint(100, 9999)),
    "invoice": lambda r: f"INV-{r.randint(2022, 2026)}-{r.randint(1000, 99999)}",
    "member": lambda r: str(r.randint(1000000, 99999999)),
    "username": lambda r: f"{r.choice(FIRST_NAMES).lower()}{r.choice(['_', '', '.'])}{r.randint(1, 999)}",
    "age": lambda r: str(r.randint(3, 14)),
    "years": lambda r: r.choice(["two", "three", "five", "six", "ten", str(r.randint(4, 15))]),
    "minutes": lambda r: str(r.choice([20, 25, 35, 40, 45, 50, 55, 70, 90])),
    "n": lambda r: r.choice(NUMBER_WORDS + [str(r.randint(3, 40))]),
    "first": lambda r: r.choice(FIRST_NAMES),
    "last": lambda r: r.choice(LAST_NAMES),
    "wrongname": lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}",
}
POOLS = {
    "item": ITEM,
    "apparel": APPAREL,
    "shoes": SHOES,
    "gadget": GADGET,
    "screen": SCREEN,
    "kitchen": KITCHEN,
    "electric": ELECTRIC,
    "cookware": COOKWARE,
    "kitchenware": KITCHENWARE,
    "capacity": CAPACITY,
    "home": HOME,
    "furniture": FURNITURE,
    "tall": TALL,
    "appliance": APPLIANCE,
    "electrical": ELECTRICAL,
    "battery": BATTERY,
    "audio": AUDIO,
    "storage": STORAGE,
    "smarthome": SMARTHOME,
    "toy": TOYS,
    "engravable": ENGRAVABLE,
    "device": DEVICE,
    "colour": COLOURS,
    "size": SIZES,
    "shoesize": SHOE_SIZES,
    "material": MATERIALS,
    "courier": COURIERS,
    "country": COUNTRIES,
    "city": CITIES,
    "paymethod": PAYMETHODS,
    "card": CARDS,
    "bnpl": BNPL,
    "currency": CURRENCY_CODES,
    "plan": PLANS,
    "subscription": SUBSCRIPTIONS,
    "browser": BROWSERS,
    "app": APPS,
    "agent": AGENTS,
    "relative": RELATIVES,
    "period": PERIODS,
    "day": WEEKDAYS,
    "merchant": MERCHANTS,
    "shop": SHOPS,
}

# ---------------------------------------------------------------------------------------------
# Label-neutral framing: greetings, preambles, sign-offs
# ---------------------------------------------------------------------------------------------

# (greeting, separators it may be followed by); the separator is drawn per message.
GREETINGS = [
    ("Hi", ",,!-"), ("Hello", ",,!"), ("Hey", ",! "), ("hey", ", "), ("Hi there", ",!"),
    ("Hello there", ",!"), ("Good morning", ",."), ("Good afternoon", ",."), ("Good evening", ",."),
    ("Dear support team", ","), ("Dear Sir or Madam", ","), ("Hi team", ",!"), ("Hello support", ","),
    ("Hiya", ",! "), ("Morning", ",!"), ("Hi {agent}", ",!"), ("Hello {agent}", ","),
    ("To whom it may concern", ","), ("Hey there", ",!"), ("Greetings", ","), ("Hi folks", ",!"),
    ("Hello customer service", ","), ("hi guys", ", "), ("Dear customer care", ","),
    ("hello", ", "), ("hi", ", "), ("Dear {shop} team", ","), ("Hi {shop}", ",!"),
]  # fmt: skip
GREETING_SEPARATORS = {",": ",", "!": "!", "-": " -", ".": ".", " ": ""}
PREAMBLES = [
    "Sorry to [bother|trouble] you.", "Quick question.", "Hope you're [well|having a good day].",
    "I hope you can help me.", "Not sure if this is the right place to ask.",
    "I tried the chatbot but it [didn't understand me|was useless|kept sending me in circles].",
    "This is my [second|third] message about this.", "I've been a customer for {years} years.",
    "Writing on behalf of my {relative}.", "I'm typing this on my phone, sorry for any typos.",
    "I couldn't find the answer in your [FAQ|help centre].", "First time contacting you.",
    "Been on hold for {minutes} minutes so trying [email|this form] instead.",
    "Apologies if this has been asked before.", "I'm at work so can't call.",
    "Hope this is the right [email address|inbox|form].", "I've read the help pages and I'm still stuck.",
    "Long story short:", "Really hoping someone can sort this out [today|quickly].",
    "My {relative} usually deals with this, but [not today|they're away this week].",
    "Your live chat is [closed|down], so:", "Bit of a strange one.", "I'll keep this brief.",
    "Okay so.", "Following up on my call [yesterday|this morning].", "Hopefully an easy one.",
]  # fmt: skip
CLOSERS = [
    "Thanks.", "Thank you!", "Thanks [in advance|a lot|so much].", "[Many thanks|Thanks], {first}",
    "Cheers", "cheers, {first}", "Regards, {first} {last}", "Kind regards, {first}", "Best, {first}",
    "thx", "ty", "Appreciate the help.", "[Look|Looking] forward to [hearing from you|your reply].",
    "Please reply [asap|soon|today].", "Thanks for your help!", "Sent from my [iPhone|Galaxy|iPad]",
    "Have a [good|nice] day.", "Hope to hear back soon.", "Much appreciated.", "Any help appreciated.",
    "- {first}", "Awaiting your reply.", "[Please|Feel free to] call me on {phone} if easier.",
    "Best wishes, {first} {last}", "Thanks again.", "Speak soon.", "{first} ({email})", "Ta.",
    "Thanks a lot!!", "Grateful for any help.", "Thanks for reading.", "{first} {last}",
]  # fmt: skip
# ---------------------------------------------------------------------------------------------
# Hand-written message templates, per label
# ---------------------------------------------------------------------------------------------

TEMPLATES: dict[str, list[str]] = {
    "delivery": [
        "[where is|where's|wheres|any news on|what's happening with] my order {order}",
        "Where's my [parcel|package|delivery|order]?",
        "I placed order {order} on {date} and it [still hasn't arrived|hasn't turned up yet|is nowhere to be seen]. [Can you tell me where it is?|Where is it?|Could you check on it?|What's the hold-up?]",
        "Tracking for {order} hasn't [updated|moved|changed] since {date}. Is it stuck [somewhere|in a warehouse|with the courier]?",
        "My {item} was [supposed|meant|due] to arrive on {day} but [nothing came|it never showed up|there's still no sign of it]. [What's going on?|Any update?|Where is it?]",
        "The {courier} tracking says [delivered|'delivered to customer'|it was handed over] but there is no parcel at my door or with [my neighbours|the neighbours|building reception|the concierge].",
        "how long does [shipping|delivery|postage] take to {city}",
        "Do you ship to {country}? And roughly how many [days|working days|weeks] [does it take|would delivery be|until it gets here]?",
        "I [entered|typed|put in] the wrong address for order {order}. Can you change it to {street} before it [ships|goes out|leaves the warehouse]?",
        "It's been {period} since I ordered and I still [have no|haven't been sent a|can't find any] tracking number.",
        "[package|parcel] lost??",
        "{courier} left a [card|note|slip] saying they tried to deliver but I was [home all day|in the whole afternoon|sitting right by the door|working from home]. How do I get my parcel now?",
        "Can you [give|send|forward] me the tracking link for order {order}? The [shipping|dispatch|confirmation] email never came through.",
        "My order has [shown|said] 'out for delivery' since [yesterday morning|yesterday|{day}] and nothing has happened.",
        "Is there any way to [speed up|hurry up|upgrade] delivery? I [need|really need|have to have] the {item} by {day}.",
        "When will my order [ship|be dispatched|leave your warehouse]? It still says '[processing|preparing|awaiting dispatch]' after {period}.",
        "Only one of my [two|three] parcels has turned up. Where is the [second|other] one for order {order}?",
        "what courier do you use for [deliveries|parcels|shipping] to {country}",
        "the driver left my parcel [in the rain|on the street|at the wrong house|behind the bins|on a wall]. the [tracking|delivery] photo isn't even my door",
        "Order {order} has been stuck 'in transit' at the {city} depot for {period}. Please [chase|contact|speak to] {courier}.",
        "Could you confirm the delivery date for my order? I'm going away on {date} and don't want it [sitting outside|left on the doorstep|going back to the depot].",
        "DELIVERY IS LATE AGAIN. {period} and counting. Where is my [stuff|order|parcel]??",
        "Can I collect my order from a [parcel locker|pickup point|collection point|local shop] instead of having it delivered to my [home|flat|house]?",
        "I moved house [last week|recently|on {date}] and my order is going to my old address. Can it be redirected to {street}, {city}?",
        "my tracking number {tracking} doesn't work on the {courier} website, it just says [not found|no information available|invalid number]",
        "Do you offer [next-day|express|same-day] delivery, and what's the cut-off time [to order|for dispatch|in the evening]?",
        "The estimated delivery date keeps [moving|changing|getting pushed back]. First it was {date}, now it says [next week|'soon'|the end of the month]. When will it actually arrive?",
        "Still waiting on my {item}. Order {order}. [Please advise.|Please chase.|What's happening?]",
        "Is express shipping available for the {item}? Waiting {period} with [standard|normal] delivery is too long for me.",
        "my parcel was marked as [sent back to the warehouse|undeliverable] and I don't know why. can you [ship|send] it out again?",
        "{courier} says the address is incomplete. It's {street}, {city} {postcode} - please update it so they can deliver.",
        "Will my order arrive before [Christmas|the weekend|my holiday|Friday|my daughter's party] if I order today?",
        "My order was split into [two|three|several] shipments but I only [got|received] one tracking number.",
        "Why does my tracking show the parcel in {city} when I live [nowhere near there|hundreds of miles away|in a completely different region]?",
        "parcel hasn't [moved|budged|updated] in a week",
        "I ordered a {item} on {date} with standard [shipping|delivery]. The confirmation said {period} but it's now well past that. Could you look into where it is?",
        "Can someone [call|ring|phone] the courier? They keep saying 'delivery attempted' but no one has ever [knocked|rung the bell|come to the door].",
        "Is it possible to [choose|pick|book] a delivery time slot? I work [during the day|nights|long shifts] and can't wait in.",
        "I chose express delivery and it's taken {period}. [That's not express.|How is that express?|Not impressed.]",
        "Tracking says 'held at customs' for order {order}. What do I need to do to get it [released|moving again]?",
        "Can you tell the driver to leave my parcel [with a neighbour|in the porch|in the shed|behind the side gate] if I'm out?",
        "where is order {order}???? [its been ages|been waiting forever|this is taking so long]",
        "My [delivery|parcel] was signed for by someone called {wrongname} but nobody by that name lives here.",
        "how do i track my [order|parcel|package]",
        "I have not received any shipping confirmation for the {item} I ordered on {date}. Has it been [sent|dispatched|posted] yet?",
        "Your delivery partner {courier} is [useless|hopeless|a joke]. Third failed delivery [this week|in a row|since Monday]. Just tell me where my parcel is.",
        "Do you deliver on [weekends|Sundays|bank holidays|Saturdays]?",
        "My order is showing as delivered in {city}. That's not where I live! Someone else has my [parcel|package].",
        "I ordered two things and the {item} came but the other one didn't. Is it coming [separately|in another box|later]?",
        "The postcode on my order is wrong, it should be {postcode}. Can you fix it before {courier} [picks it up|collects it]?",
        "Sorry, just checking - is order {order} on its way [yet|to me]?",
        "wheres my [packge|parsel|pakage] been waiting [forever|ages|for weeks]",
        "How long does delivery to {country} [usually|normally|typically] take?",
        "My tracking has said 'label created' for {period}. Has it actually been handed over to {courier}?",
        "Can I change the delivery address on order {order}? It hasn't [shipped|been dispatched] yet.",
        "The parcel was supposedly delivered to the [reception|post room|mailroom] at my office but they say nothing came in for me.",
        "any [update|news] on my delivery",
        "I'm [travelling|away] from {date}. If the parcel comes while I'm [away|gone], will {courier} hold it at the depot?",
        "Order {order} was due on {day}. It's now [two|three|four] days later and still nothing. I need it for a [birthday|wedding|trip].",
        "Do you ship internationally? I'm in {country}.",
        "The courier marked my parcel as 'refused by recipient'. I never refused anything! Where is it now?",
        "how come my tracking number shows someone else's delivery in [another city|a different town|{city}]?",
        "The delivery note says my parcel was left in a safe place but I've searched [everywhere|the whole garden|every corner]. Where would the driver have put it?",
        "Can I have my order [sent|delivered] to my work address instead of [home|my flat]?",
        "Still no sign of my parcel. Tracking: {tracking}.",
        "What's the typical [dispatch|processing|handling] time once an order is placed?",
        "My {relative}'s order {order} hasn't arrived and [she's|they're|we're] getting worried. Could you check where it is?",
        "The {courier} driver said my building was [inaccessible|locked]. There's a buzzer! Please [rebook|rearrange] the delivery.",
        "Is my order lost? I've waited {period} and the tracking page just says '[pending|awaiting update|in progress]'.",
        "ok so the app says my order was dispatched on {date} but {courier} has no record of it [at all|anywhere]. which one is right",
        "can u tell me when my {item} will [arrive|get here|be delivered]",
        "Urgent: a [gift|present] needs to arrive by {date}. Can you guarantee that with [express|priority] shipping?",
        "I wasn't home when the delivery [came|was attempted]. How do I [rearrange|reschedule] it?",
        "Delivery ETA for {order}?",
        "Why is my parcel going via {city}? Does that mean it'll be [delayed|late]?",
        "The tracking says it was delivered at {time} but I was home and the doorbell never [rang|went].",
        "I'd like to know if you [deliver|ship] to PO boxes.",
        "I'm writing because my order was meant to be delivered last week. I've checked with the [post office|sorting office] and my neighbours, and nobody has seen it. Could you please find out what happened?",
        "My parcel has been sitting at the {courier} [sorting centre|hub|depot] since {date}. Can you chase it [please|for me]?",
        "The [courier|delivery van|driver] came to the wrong flat. Number {n} got my parcel and they've moved out.",
        "Do you know if there are delays with {courier} at the moment? My order is [late|overdue] and I'm getting [worried|anxious].",
        "[I've been tracking|I keep refreshing the tracking for] order {order} and it went from {city} back to the [warehouse|depot] again. Is it going round in circles?",
        "You said dispatch within 24 hours but the {item} still hasn't left after {period}. When is it actually going out?",
        "[The|Your] website promised delivery by {day}. It's {day2} evening. [Nothing.|Still nothing.|Not a thing.]",
        "Can you [check|find out] whether my parcel is [on the van|out with a driver] today? I need to pop out for an hour.",
        "It says 'delivery exception' on the {courier} tracking. What does that mean for my order?",
        "Half my order came on {day} and the rest is just 'awaiting stock allocation'. When will the rest be posted?",
        "The [courier|driver] threw my parcel over the fence and now I can't find it anywhere in the garden.",
        "My parcel is marked delivered to a 'parcel locker' but I never chose a locker and don't have a code.",
        "how much longer for my delivery? already {period}",
        "Is there a [phone number|direct contact] for the {courier} depot? They have my parcel and won't [deliver it|bring it out].",
        "[So|Right, so] the {courier} app says my parcel is '[with the driver|on the vehicle]' but the map shows the van [going the other way|parked at a depot|in {city}]. Will it still come today?",
        "I'm [disabled|housebound] and can't get to the post office. Can the {item} be [redelivered|brought again] rather than left for collection?",
        "[three|two|four] weeks. no parcel. no reply to my emails. order {order}.",
        "Could you let me know which courier is handling order {order}? The email just says '[shipped|on its way]' with no details.",
        "My [neighbour|landlord] says a {courier} driver [dumped|left] a box in the communal hallway on {day}, but it's gone now. Was that mine?",
        "The delivery window was {time} to [6pm|8pm|noon] and I waited in the whole time. Nobody came and the status now says 'customer not available'.",
        "How do I get [text|SMS] updates when my parcel is [close|nearby|on the van]?",
        "I live [on a farm|down a long lane|in a new-build estate] and couriers always struggle to find us. Can I add delivery instructions to order {order}?",
        "is standard delivery to {city} usually [2-3|3-5] days or longer at the moment?",
        "I ordered on a [Friday night|Saturday|bank holiday] - does that mean it won't be dispatched until [Monday|Tuesday]?",
        "[Apparently|Supposedly] my parcel was given to a neighbour at number {n}, but there's no number {n} on my street.",
        "Can I track a parcel without an account? I ordered as a guest[ on {date}|].",
        "The van turned up, the driver said the {item} wasn't on board after all, and [left|drove off]. When will it actually be delivered?",
        "Is it normal for a parcel to sit at 'arrived in destination country' for {period}? I'm in {country}.",
        "My [flat|building] has a parcel room but the {courier} driver [took it back to the depot|marked it undeliverable] instead. Can you arrange another attempt?",
        "[Honestly,|] how hard is it to get a [parcel|box] from your warehouse to {city}? {period} now.",
    ],
    "return": [
        "How do I [return|send back] an item?",
        "I'd like to [return|send back] the {item} from order {order}. It's [unused|unworn|never been opened] and still in the box.",
        "the {apparel} doesn't fit. can I [exchange|swap] it for a {size}?",
        "When will I get my refund? I [sent|posted|returned] the {item} back on {date}.",
        "I want my money back for the {electrical}. It [stopped working|died|packed in] after {period}.",
        "return label [please|pls|needed], order {order}",
        "Can I [swap|exchange] the {colour} {apparel} for a different colour[, maybe {colour2}|]?",
        "The {electrical} arrived [broken|cracked|dead on arrival]. I want to send it back and get a refund.",
        "What's your returns policy? [Is it 30 days?|How many days do I have?|Do I need the receipt?]",
        "I [returned|sent back] two items but only got refunded for one of them.",
        "You received my return on {date} according to {courier} but I still haven't [got|seen] my {amount} back.",
        "Do I have to cover the postage to send something back, or is [it|the return] free?",
        "I got the wrong {item} in my order. How do I send it back and get the [right one|one I actually ordered]?",
        "changed my mind about the {item}, can i still [return|send back] it? bought it {period} ago",
        "The refund for the {item} I sent back went to my old card, which is [closed|cancelled by the bank] now. How do I get the money?",
        "Can I return something [bought in the sale|I got at a discount|from the clearance section]?",
        "I'd like to exchange the {electrical} for the [bigger|more powerful|newer] model, happy to [pay|cover] the difference.",
        "Please can you arrange a courier collection for my return? I can't get to a drop-off point [because I don't drive|with my bad back|this week].",
        "My return was rejected and posted back to me. Why? The {item} was in [perfect|brand new|mint] condition.",
        "The {item} isn't as described. I'd like a full refund, not [store credit|a voucher].",
        "Return or exchange, whichever is quicker - the {apparel} is [way too big|miles too small|the wrong length].",
        "how long do refunds take to [show up|come through|hit my account]",
        "I [lost|threw away|recycled] the original packaging. Can I still return the {item}?",
        "Where do I find the returns form? It wasn't in the [box|parcel].",
        "I got the {item} as a gift and I don't [want|need] it - can I return it if I didn't buy it myself?",
        "REFUND STILL NOT RECEIVED. It's been {period} since you got the [item|parcel|{item}] back.",
        "The {screen} has a [scratch|crack|dead pixel] on the screen. I want [a replacement|to swap it for a new one].",
        "Can I return just one [item|piece] from a [bundle|set]?",
        "I'm outside the 30-day window by [a couple of|three|a few] days. Is there any way you'd still accept a return of the {item}?",
        "The {apparel} [shrank|faded|went bobbly] after the first wash. I'd like to send it back.",
        "Do you do exchanges in [store|your shops] or only [by post|online]?",
        "My refund was only {amount} but the {item} cost more than that. Why [was the full amount not refunded|didn't I get everything back]?",
        "I have sent back order {order}, tracking {tracking}. Can you confirm you've [received|got] it and start my refund?",
        "the returns portal keeps [giving an error|crashing] when I enter order {order}",
        "the {shoes} are too [small|tight|narrow], I need to swap them for a {shoesize}",
        "Can I drop my return off at a {courier} [point|shop] or does it have to go by post?",
        "The {electrical} is faulty - it [won't turn on|keeps overheating|makes a grinding noise|cuts out after a minute]. Refund or replacement please.",
        "I was sent the {item} twice by mistake. How do I send the extra one back?",
        "i [want|need|would like] to return this",
        "How do I print a return label? I don't have a printer[ at home|].",
        "Exchange request: {apparel}, {size} to {size2}, [order|ref] {order}.",
        "Does the refund include the original shipping cost[ or just the item|]?",
        "I bought the {item} for my {relative} but they already [have one|own one]. Can I return it unopened?",
        "You said the refund would take 5-7 days. It's day [12|15|nine]. Where is my money for the returned {item}?",
        "Can I return an item I bought with a [discount code|promo code|voucher]? Will I get the full price back?",
        "The {item} is nothing like the [photos|pictures|description]. Sending it back. How do I [start|do that]?",
        "Is there a restocking fee if I return the {appliance}[ unopened|]?",
        "I need to return a [mattress|sofa|wardrobe]. It obviously won't fit in a postbox - how does this [work|go]?",
        "my refund says processed but nothing has come back into my account [yet|after a week]",
        "Could you exchange my {colour} {home} for the {colour2} one? I haven't [used it|taken the tags off].",
        "I received the {item} [yesterday|on {day}] but it's not what I expected. I'd like to return it for a refund please. What do I need to do?",
        "I returned the {item} [a month ago|on {date}] and haven't heard anything. No refund, no email, nothing.",
        "can i get a refund instead of [an exchange|a replacement]",
        "Will I get store credit or my money back if I return the {apparel}[ I bought last week|]?",
        "The [zip|strap|seam] on the {apparel} broke on day two. Can I exchange it for a new one?",
        "How long do I have to [send something back|return things|change my mind]?",
        "I'd like to return part of my order (the {item}) and keep the [rest|other items].",
        "Is it [ok|fine|allowed] to return items from two different orders in one [parcel|box]?",
        "The return label you [emailed|sent] has the wrong [address|order number] on it.",
        "I sent the {item} back with {courier}. [Here's the tracking|Tracking number]: {tracking}. Please process my refund.",
        "Wrong size arrived - ordered {size}, got {size2}. Can you [swap it|exchange it|send the right one]?",
        "Sorry for the hassle, but the {item} was a duplicate [gift|present]. Can I return it for a refund?",
        "I'm really [unhappy|disappointed] with the quality of the {item}. I'd like to send it back.",
        "[returns|return] address?",
        "Is the return window [14 or 30|30 or 60] days for [electronics|tech|gadgets]?",
        "The {electrical} came with a missing [part|cable|piece]. I'd rather just return it than wait for [the part|a replacement].",
        "Do you refund to the original payment method or as a [voucher|gift card] when I return something?",
        "I'd like to exchange the {item} I got for my [birthday|anniversary|wedding] for something else[ from your shop|].",
        "I returned the {item} [in store|at your {city} shop] but the assistant said the refund would come from the online team. Who do I ask?",
        "please process my return asap, {courier} [delivered|dropped] it back to you on {date}",
        "The {apparel} I ordered in {colour} looks completely different [in person|in real life]. I want to send it back.",
        "Can I return a personalised [item|gift]? The engraving was [spelled wrong|on the wrong side].",
        "What condition does [an item|a product|clothing] need to be in for a return[ to be accepted|]?",
        "i sent back my order weeks ago.. still no refund. this is ridiculous",
        "How do I return something I bought as a guest[ without an account|]?",
        "I need to send back the {appliance} because it's [too loud|far too big for my kitchen|not powerful enough]. Could you email me a prepaid return label?",
        "[refund status|any news on my refund] for order {order}?",
        "My exchange came back in the same wrong [size|colour]. Can I just get my money back instead?",
        "I bought a {item} on sale for {amount} and it [broke|fell apart] within a week. Am I able to return it for a refund?",
        "Do I need to [include|put] the receipt in the box when I send the {item} back?",
        "I'd like to swap the {shoes} for a half size [up|down]. Same colour please.",
        "My kid [opened|unwrapped] the {item} but never used it. Can it still go back for a refund?",
        "My refund was {amount} short because of a return fee nobody mentioned. I thought returns were free?",
        "The returns drop-off at {courier} refused my parcel because the QR code [wouldn't scan|had expired]. Can you send a new one?",
        "Got a refund email for the {item} but the amount is zero. Is that a mistake?",
        "I'd rather exchange than return - is the {apparel} available in {size} so you can just send that instead?",
        "The {furniture} doesn't match the rest of my furniture after all. What's the process to send it back?",
        "I posted my return on {date} and the tracking says you signed for it. Refund please!",
        "Does a faulty item returned after [3|four|six] months still get a full refund or just a repair?",
        "can I return the {shoes} if I've worn them [outside once|to the shops|for one walk]",
        "I [ordered|bought] the {apparel} in two sizes to try on. Keeping the {size}, sending back the {size2} - how do I do that?",
        "The {item} I returned on {date} shows as '[received|delivered]' on {courier} tracking, but your site still says 'awaiting return'. When does the refund start?",
        "Do returns have to be in the original box, or can I use any [box|bag|packaging]?",
        "I'm [abroad|living] in {country} now - can I still send the {item} back from here?",
        "The {electrical} works but it smells of burning plastic. I don't feel safe using it and want to return it.",
        "Can I exchange the {shoes} for a different style instead of the same ones in another size?",
        "[return window|how long is the return window] for christmas gifts?",
        "I've been refunded for the wrong item - I sent back the {item}, not the [other thing|other item on the order].",
        "How do I send back a large item like the {furniture}? It weighs a [ton|lot].",
        "My {relative} returned my {item} for me at the {city} store without the receipt. Will the refund still go to my card?",
        "The colour of the {apparel} ran in the wash and ruined my other clothes. I want a refund for it.",
        "You sent me a replacement {electrical} that has the same fault. I'd now like my money back[, please|].",
        "Can I get a refund on the {item} without sending it back? It's [broken beyond use|literally in pieces].",
        "[Exchange|Swap] the {apparel} for {colour} please, same size. Is that possible without reordering?",
        "I don't have the {courier} return QR code any more. Where can I get it [again|resent]?",
        "hi, [2nd|third] time asking, when will my refund for the returned {shoes} come through",
    ],
    "payment": [
        "I was charged [twice|two times|double] for order {order}.",
        "My card keeps getting declined at checkout [but it works everywhere else|even though there's money on it|and I don't know why].",
        "Can I get an invoice for order {order}? I need it for [my company|my expenses|our accounts team|my accountant].",
        "What payment methods do you [accept|take|support][ for orders to {country}|]?",
        "There's a charge of {amount} on my [statement|bank statement|card] I don't recognise.",
        "Can I pay [with|using|by] {paymethod}?",
        "How do I update the card saved on my account? [The old one expired.|I have a new card.|]",
        "Why was I charged a {amount} [fee|admin fee|processing fee]?",
        "I need a VAT receipt for my purchase on {date}[ for work|].",
        "my {card} ending {last4} was charged {amount} but the order [failed|never went through|shows as unsuccessful]",
        "Is it possible to split the payment between a [gift card|voucher] and my {card}?",
        "[PayPal|My banking app] says the payment went through but your site says it failed. Was I charged or not?",
        "Do you offer payment in [instalments|monthly instalments], like {bnpl}?",
        "The price at checkout was higher than on the [product page|advert]. Where does the extra {amount} come from?",
        "I got charged in {currency} instead of my local currency. Why the [conversion|exchange rate]?",
        "Can you resend the receipt for my order? I can't find the email[ anywhere|].",
        "Double charged!!! {amount} taken out twice. [Fix it.|Sort it out.|Unbelievable.]",
        "My order was only {amount}, so why is there a pending [authorisation|hold] of {amount2} on my card?",
        "[Apple Pay|Google Pay] doesn't work on your checkout page. It just [spins|hangs|shows a blank screen].",
        "Can the invoice be addressed to my company name and include our [VAT number|tax ID]?",
        "i paid by bank transfer on {date}, have you received it[ yet|]",
        "Your site says 'payment failed, try another method' every time. I've tried my {card} and {paymethod}.",
        "Is there a surcharge for paying with [Amex|a credit card|PayPal]?",
        "Could you tell me what the {amount} charge on {date} was for? [I can't match it to an order.|]",
        "I need to change my billing address [for invoices|on my account][ - we've moved offices|].",
        "Can a gift card be used for [shipping costs|postage] or only for products?",
        "My payment [was taken|went out] but I never got an order confirmation.",
        "Is it safe to save my card details on your [site|app]?",
        "My bank flagged a payment to you as [suspicious|possible fraud] and I want to check it's genuine: {amount} on {date}.",
        "can I pay cash on delivery[ in {city}|]",
        "Why does my invoice show a different amount from what I [paid|was charged]?",
        "The [discount|promo] code was accepted but I was still charged full price.",
        "I'd like [monthly|quarterly] invoices for our business account rather than one per order.",
        "The [3D Secure|bank verification] code never arrives so I can't finish paying.",
        "Can I [pay with|use] two different cards[ on one order|]?",
        "How do I download a PDF invoice[ for order {order}|]?",
        "My {paymethod} payment has been pending for {period}. Is something wrong?",
        "Why did my card get charged before the item [shipped|was even sent]?",
        "Is there a [fee|charge|hidden fee] for paying with {bnpl}?",
        "You took {amount} from my account without my [permission|consent]!",
        "The receipt I got doesn't list the items, just the total. Can I have an itemised one[ for my records|]?",
        "Payment declined, error {errcode}. What does that [mean|even mean]?",
        "Do you accept foreign cards? My {card} is issued in {country}.",
        "I see two pending charges for the same order. Will one [drop off|disappear|be released]?",
        "hi can i change the payment method on an order i already placed",
        "We need a pro forma invoice before our [finance team|accounts department] can pay.",
        "The gift card balance wasn't applied at checkout and the whole {amount} went on my [card|{card}].",
        "Can I get copies of all my receipts from [last year|2024|the last six months] for my taxes?",
        "What does '[payment authorisation failed|transaction not permitted]' mean?",
        "My {bnpl} instalment was taken twice this month[, both for {amount}|].",
        "The order said {amount} but my bank statement shows {amount2}. Why the difference?",
        "Can you send me an invoice with the payment terms[ and your bank details|] on it?",
        "Your checkout doesn't show [PayPal|Apple Pay|Klarna] as an option anymore. Did you remove it?",
        "I keep getting [emails|letters] saying my payment is overdue but I paid on {date}.",
        "how do I remove an old [card|{card}] from my saved payment methods",
        "Was my payment successful? The page [crashed|froze] right after I clicked pay.",
        "There's a foreign transaction fee on my statement next to your shop's name. Is that from you or my bank?",
        "Charged {amount} for something I never ordered. [Explain please.|What is this?]",
        "I need the receipt to show my name and address so my [employer|company] can reimburse me.",
        "Can I pay by invoice? We're a [school|charity|small business].",
        "My card was charged [three times|twice] when the checkout [timed out|crashed].",
        "Why did the price change between adding to [basket|cart] and paying?",
        "Is it possible to pay in {currency}[ rather than pounds|]?",
        "I'd like to know if you accept {paymethod} for orders over {amount}.",
        "The billing name on my invoice is [misspelled|wrong]. Could you reissue it as {first} {last}?",
        "So I tried to pay with Google Pay, got an error, tried again and now there are two transactions. Which one is real?",
        "i didnt authorise this payment",
        "What's the {amount} '[service fee|handling charge]' on my last [bill|invoice]?",
        "Can I use more than one gift card on [an order|a single purchase]?",
        "Do you store my [CVV|card security code]?",
        "My bank says the charge came from a company with a different name. Is '{merchant}' you?",
        "Payment keeps failing on the app but works on the website. [Weird.|Any idea why?]",
        "Invoice {invoice} has the wrong VAT rate on it.",
        "Can you confirm the last four digits of the card used for order {order}? I have [several|a few] cards.",
        "Is there any way to get a receipt for a guest checkout[ from {date}|]?",
        "the checkout keeps saying my [postcode|billing address] doesn't match the card",
        "I've been charged VAT but I'm ordering from [outside the EU|{country}]. Why?",
        "pending payment of {amount} still hasn't cleared after {period}",
        "My {card} was declined, then the money left my account anyway. [Where did it go?|Has the payment gone through or not?]",
        "Could you add our purchase order number to invoice {invoice}? Accounts won't pay it otherwise.",
        "The checkout adds a {amount} card fee at the very last step. Is there a way to avoid it?",
        "I was [billed|charged] {amount} on {date} and again on {date2} for the same thing.",
        "My bank statement shows a charge from you in {currency} - why not in my own currency?",
        "Can I get the invoice for order {order} sent to our finance inbox, {email}?",
        "Your payment page rejects my {card} with '[card not supported|invalid card type]'. It's a perfectly normal card.",
        "The order total was {amount}, but {paymethod} took {amount2}. Where did the extra come from?",
        "payment went through twice on {paymethod}, one of them needs [reversing|cancelling]",
        "Is it possible to pay the [remaining balance|deposit] by bank transfer, and what reference should I use?",
        "Where do I see the receipts for my past orders in the [app|website]?",
        "The invoice says 'unpaid' but the money left my account on {date}. Can you check and mark it as paid?",
        "Is it possible to add a second billing contact to our invoices[, {email}|]?",
        "Why was my {card} charged {amount} when I used a gift card for the whole order?",
        "My receipt shows the wrong currency - I paid in {currency}[, not what it says|].",
        "Does your site [support|take] {paymethod} yet? I don't have a credit card.",
        "i think there's a mistake with my bill, i was charged for shipping [twice|on an order with free delivery]",
        "Can I pay for someone else's order with my card? My {relative} can't pay online.",
        "There's a small {amount} charge on my card from you I don't understand - is that a verification check?",
        "Could you send the receipt for order {order} as a PDF instead of in the email [body|text]?",
        "What happens if my {bnpl} payment fails? I don't want [extra charges|late fees].",
        "Checkout asked for my card, then sent me to my bank's app, then said 'payment cancelled'. I didn't cancel anything.",
        "Our [accounts team|bookkeeper] needs your bank details to pay invoice {invoice} by transfer.",
        "The price was {amount} in the app but {amount2} on the website, and I was charged the higher one.",
        "How do I set a different default card for future orders?",
        "My card was debited {amount} but the order page says I still owe {amount2}. Which is it?",
        "Is there a way to get one combined invoice for orders {order} and {order2}?",
    ],
    "password": [
        "I can't [log in|sign in|get into my account].",
        "Forgot my password and the reset email [never arrives|isn't coming through|doesn't show up].",
        "My account is locked after too many [attempts|tries|failed logins]. How do I unlock it?",
        "I think someone hacked my account - my [email address|phone number] was changed and I can't get in.",
        "The [two-factor|2FA|verification] code isn't coming through to my phone.",
        "reset password link [expired|doesnt work|is dead]",
        "It says my password is [incorrect|wrong] but I know it's right[, I use it every day|].",
        "I got a new phone and lost my authenticator app. How do I log in [now|again]?",
        "How do I [change|update] my password?",
        "The login page just keeps [reloading|refreshing|spinning] on {browser}.",
        "I don't remember which email I used to [sign up|register], so I can't reset my password.",
        "Someone logged into my account from {country}[ last night|]. It wasn't me!",
        "The verification code you text me says '[invalid|incorrect|expired]' every time.",
        "The password reset email goes to an old [address|work email] I no longer have access to.",
        "Can't sign in on the {app} app, works fine on [desktop|my laptop|the website].",
        "I keep getting '[session expired|please sign in again]' as soon as I log in.",
        "i cant get into my account [help|pls help|what do i do]",
        "How do I turn on [two-factor authentication|2FA|two-step verification]?",
        "The reset link says '[token invalid|link expired|request not found]'.",
        "My account got locked for 'suspicious activity'. I just want to log in[ and check my orders|].",
        "I have been trying to sign in since {time} and it keeps saying my username doesn't exist. I've had this account for [years|ages].",
        "I received a password reset email I didn't ask for. Is my account [safe|compromised]?",
        "Sign in with [Google|Apple|Microsoft] doesn't work anymore.",
        "My new password isn't accepted - it says it doesn't meet the requirements but it has [everything listed|a number, a symbol and a capital].",
        "Locked out. Again. Third time this [month|week].",
        "I changed my phone number and now the login codes go to the old one[ that I don't have|].",
        "Can you unlock my account? [Username|My username is] {username}.",
        "Got an email saying my password was changed[ at {time}|]. I didn't do that!!",
        "Where do I find the [backup|recovery] codes for [2FA|two-factor]?",
        "i forgot my [pasword|passwrd|password again]",
        "The captcha on the login page never accepts my [answer|clicks].",
        "After updating the app I'm logged out and can't log back in[ on my {device}|].",
        "How often do I [have|need] to change my password?",
        "Logging in with {email} says 'no account found' but you send your newsletter to that exact address.",
        "The magic link login opens but then says '[link already used|link invalid]'.",
        "Somebody is trying to get into my account - I keep getting login codes I didn't [request|ask for].",
        "Can I log in with my phone number instead of [email|my email address]?",
        "Please help, I'm stuck in a loop: reset password, log in, [asked to reset again|back to the start].",
        "The security questions won't accept my answers and now I'm locked out[ completely|].",
        "I'm not getting the email to verify my login on a new [device|laptop|phone].",
        "Is there a way to see which devices are [signed in to|logged into] my account?",
        "my account was hacked and they changed my [name and phone number|email and password]",
        "I can log in on my [laptop|computer] but not on my {device}.",
        "What do I do if I've lost access to both my email and my phone for [2FA|the codes]?",
        "The password reset email is going to spam and the link inside is [broken|dead].",
        "Can't log in - [error|it says] {errcode}.",
        "[Face ID|Fingerprint] login on the app stopped working and now it asks for a password I never set.",
        "sign in not working[ on {browser}|]",
        "My {relative} changed the password on our shared account and now [neither of us|none of us] can get in.",
        "I'd like to reset my password but I don't have that email anymore. I can verify with my last order number, {order}[, if that helps|].",
        "Your site logs me out every [few|couple of] minutes.",
        "Account locked. I need access [urgently|today|right now].",
        "How do I set up an authenticator app instead of [SMS|text message] codes?",
        "The login code email takes [20 minutes|half an hour|ages] to arrive and by then it's expired.",
        "I keep being asked to verify my identity before I can log in. What do you need from me[ exactly|]?",
        "The 'forgot password' button does nothing when I [click|tap] it.",
        "I think my password was leaked in a data breach. How do I [secure|protect] my account?",
        "Why can't I [reuse|go back to] my old password?",
        "When I try to sign in with [Apple|Google] it creates a new empty account instead of logging me into mine.",
        "I'm trying to log in on {browser} and it says cookies must be enabled, but they are. What else can I try?",
        "Can you remove two-factor from my account? I don't have that [phone|number] anymore.",
        "The reset code is [6|8] digits but the box only lets me enter [5|4].",
        "'Username or password [wrong|incorrect]', it says. Which one is it??",
        "I tried to log in too many times and now I have to wait [24 hours|a whole day]? That's ridiculous.",
        "I want to change the email address I log in with[ to {email}|].",
        "login [broken|not working] since you changed the website",
        "Someone changed my password and the recovery email. I have [screenshots|emails] of my old orders to prove it's my account.",
        "The [SMS|text] with my login code never arrives in {country}.",
        "What's the password for my account? [Someone in the shop|The store assistant] set it up for me.",
        "Is there a way to stay signed in? It asks for my password every single time[ I open the app|].",
        "got locked out of my acount after trying my old password a few times. pls unlock",
        "Account compromised - please [freeze|lock] it until I can reset the password.",
        "I reset my password but the old one still works. Is that [normal|a bug]?",
        "When I click the link in the password reset email I get a [404 page|blank page|'page not found' error].",
        "I can't log in to the {app} app - it says 'too many requests'.",
        "Help! I'm locked out and my [business|shop] depends on this account.",
        "Can't get past the two step verification screen, it just reloads",
        "I'm getting 'invalid credentials' on the app even right after resetting my password[ twice|].",
        "I set up my account with Facebook login and then deleted [Facebook|my Facebook profile]. How do I get back in?",
        "how to recover account without email access",
        "Every time I enter the one-time code it says it has expired, even when I type it in [straight away|within seconds].",
        "My password manager filled in the wrong password and now the account is locked. Can you reset it for {email}?",
        "I changed my password on {date} and since then the {app} app won't accept it, only the website does.",
        "Is it normal that the 2FA text comes from a random number? I don't want to type a code into a scam.",
        "My email provider shut down, so I can't receive the password reset. Can you send it to {email} instead?",
        "The sign-in screen says my account is 'disabled'. I didn't do anything wrong - how do I get back in?",
        "my login code comes through but the app says [wrong code|code not recognised] every single time",
        "I'm a bit worried - there's a new device called '{device}' on my login history and I don't own one.",
        "Can you tell me what password rules you have? Mine keeps getting rejected with no explanation.",
        "Locked out after a [holiday|long break|few months away]. I've no idea which password I used.",
        "I [keep|have been] trying to reset my password for {email} but the [page|button] says '[something went wrong|try again later]'.",
        "My [son|daughter|ex] knows my password and keeps logging in. How do I [change it|kick them out of my account]?",
        "[Can't|Cannot] remember [my password|which password I used] or the answer to my security question. [What now?|Help.]",
        "The two-factor prompt on my {device} says 'approve sign-in' but tapping approve does nothing.",
        "Why do I need a code [every time|each time] I sign in on {browser}? It never remembers my device.",
        "[I'm|We're] locked out of our [business|company|shop] account and the only admin has [left the company|gone on leave]. How do we get access?",
        "[Ugh.|Argh.] The password reset link works on my phone but says expired on my laptop[ two minutes later|].",
        "I get the login code by email but it's [a different number|an old code] from the one the site wants.",
        "is there a way to log in without a password, like a [passkey|face id|magic link]?",
        "I'm [blind|visually impaired] and the [captcha|image puzzle] on your login page is impossible for me. How else can I sign in?",
        "Somebody guessed my password and [changed my details|messed with my settings]. I've changed it now but want to lock the account down [properly|completely].",
        "My account says 'email not verified' so it won't let me log in, but the verification email [never came|went to an old address].",
        "the 'sign in' button is greyed out after I type my password, can't [click|press] it",
        "I [typed|entered] my password wrong a few times and now it says try again in {minutes} minutes. Can you [unlock it sooner|speed that up]?",
        "Please reset the password on my account, [the email is|it's registered to] {email}. I'll [confirm|verify] whatever you need.",
        "Got a text with a login code at {time} [last night|this morning] that I didn't ask for. Should I be worried?",
        "I'm [stuck|going round in circles] on the 'verify it's you' screen - it wants a code sent to a phone ending {last4} that isn't mine.",
        "how do i change my password [on the app|on my phone], i can only find the option on the website",
    ],
    "cancel": [
        "Please cancel my [subscription|membership|plan].",
        "How do I cancel my {plan} [plan|membership|subscription]?",
        "I want to stop my [membership|subscription] from renewing next [month|year].",
        "Close my account [please|pls|asap][, I'm done|].",
        "I'd like to end my {subscription} at the end of this [billing period|month|term].",
        "Turn off auto-renew for me[ please|][ on the {plan} plan|].",
        "I want to [delete|close] my account and [all my data|everything attached to it].",
        "cancel my [sub|subscription] [now|today|]",
        "How do I unsubscribe from the {subscription}? I can't find the option [anywhere|in the app|on the site].",
        "I signed up for the free trial and want to cancel before it turns into a paid [plan|subscription].",
        "Can I pause my subscription for [a few months|the summer] instead of cancelling it?",
        "I'm [moving abroad|emigrating|relocating overseas] and need to end my membership.",
        "Please do not renew my {plan} membership on {date}[. I'm done with it|].",
        "Is there a cancellation fee if I [leave|end] my contract early?",
        "I've tried to cancel [three|four|several] times in the app and it keeps taking me back to the offers page. Just cancel it.",
        "How do I stop the monthly [box|delivery box|parcel subscription]?",
        "I no longer need the {subscription}. Please end it[ from today|].",
        "A downgrade isn't enough, I want to cancel [entirely|completely|altogether].",
        "Can I cancel online or do I need to [call|phone|write in]?",
        "My [father|mother|husband|wife] passed away and I need to close [his|her|their] account. What do you need from me?",
        "i want to quit the {plan} plan",
        "Does cancelling mean I lose access straight away or at the end of the [month|billing cycle]?",
        "Stop my [coffee|tea] subscription please, I've switched to another [roaster|supplier].",
        "CANCEL. MY. [MEMBERSHIP|SUBSCRIPTION].",
        "I'd like to terminate my [contract|agreement] with you.",
        "Where's the cancel button? I've looked in [settings|my profile] and under 'my plan'.",
        "Please confirm my subscription has been cancelled - I got no [email|confirmation].",
        "How many days' notice do I need to give to cancel[ my {plan} plan|]?",
        "I want to opt out of the automatic renewal of my [annual|yearly] plan.",
        "We're closing our business account with you. Please deactivate all {n} users.",
        "cancel my account [effective immediately|right now|today]",
        "If I cancel now, do I keep the remaining [days|weeks] I've already paid for?",
        "I joined the {plan} tier by accident. Can you cancel it[ straight away|]?",
        "I'm cancelling because the service has gone [downhill|really downhill lately]. How do I end it?",
        "Can I cancel just one of my [two|three] subscriptions?",
        "Please remove me as a member and don't renew[ anything|].",
        "Is it possible to cancel during the minimum [term|contract period]?",
        "My {subscription} renewed [yesterday|this morning] even though I meant to stop it. Please cancel it now.",
        "end [subscription|membership]",
        "How do I permanently delete my [profile|account]?",
        "I'd like to cancel the family plan but keep my own [individual account|login].",
        "Don't want the {plan} membership anymore, please cancel before the next renewal on {date}.",
        "Can you cancel my student membership? I've [graduated|left university].",
        "[Deactivate|Disable] my account please.",
        "I'm on a [12-month|24-month] plan. Can I leave early?",
        "I would like to cancel my {subscription} with effect from {date}. Please send written confirmation.",
        "What happens to my [saved items|order history|points] if I close my account?",
        "I want out. How do I stop the [subscription|membership]?",
        "please stop renewing my plan i never [use it|log in]",
        "Is there a way to cancel without talking to a [retention agent|salesperson]?",
        "How do I end the trial so I'm not signed up for a whole [year|month]?",
        "I'd like to cancel my {subscription} - money is tight at the moment.",
        "I cancelled on the [website|app] but I'm still listed as an active member.",
        "Could you close [both|all the] accounts linked to {email}?",
        "I'm switching to [a competitor|another provider]. Cancel my plan at the end of the term.",
        "can u cancel my membership [pls|asap|]",
        "Membership cancellation request - member [number|no.] {member}.",
        "I want to [unsubscribe from|leave] the wine club.",
        "How do I stop the recurring subscription box for good[, not just skip a month|]?",
        "Remove my details and cancel the [plan|membership].",
        "Please end my free trial now, I don't want to [continue|carry on].",
        "Is cancelling the same as pausing? I want to [fully stop|stop for good].",
        "My {relative} set up this subscription and wants it cancelled. It's under {email}.",
        "I no longer want a {plan} account. How can I close it [for good|permanently]?",
        "cancel [auto renewal|autorenew|the auto-renew]",
        "I've been trying to leave for weeks. Cancel my subscription today or I'm complaining to the ombudsman.",
        "Can I cancel and rejoin later without losing my [history|points|settings]?",
        "Please cancel all recurring plans on my account[ today|].",
        "After [five|six|eight] years I've decided to leave. Please close my membership and confirm by email.",
        "Does deleting the app cancel my subscription[ too|]?",
        "I want to stop my {plan} plan from auto-renewing on {date}.",
        "I'm [unhappy|not happy] with the service and would like to terminate my membership.",
        "Cancel the razor subscription, I have way too many [blades|razors].",
        "How do I cancel a subscription I started through the [App Store|Google Play store]?",
        "Close my account and delete my personal data under GDPR[ please|].",
        "my trial ends tomorrow, I do not want to be enrolled, cancel pls",
        "The subscription was a gift and I don't [want|need] it. How do I cancel it?",
        "Need to cancel the {plan} plan for our [team|office] of {n}.",
        "I'm done with the [membership|subscription]. No renewal please.",
        "I'm not using the {subscription} anymore, so please don't let it roll over into another [year|month].",
        "Can you shut down my account? I won't be [shopping|ordering] with you again.",
        "I'd like to leave the {plan} tier - what's the last date I can cancel before I'm locked in for another year?",
        "[Please|Kindly] treat this message as formal notice that I am ending my {subscription}.",
        "The 'manage subscription' page only lets me change plans, not stop them. How do I actually quit?",
        "We don't need the {plan} seats for our office anymore. Please cancel them from {date}.",
        "I'd like my account removed completely, including my [newsletter preferences|wishlist] and saved addresses.",
        "just want to cancel. no offers, no discounts, thanks",
        "Is the {subscription} cancelled if I remove my card, or do I have to do something else?",
        "My {relative} has moved into a care home, so please end [her|his] {subscription}.",
        "I'd like to cancel my {plan} plan[ please|]. [I've found something that suits me better.|My circumstances have changed.|]",
        "Can you [confirm|tell me] the exact date my membership ends if I cancel [today|this week]?",
        "[Please|Kindly] close the account registered to {email}[ and take me off all mailing lists|].",
        "We're [downsizing|closing the office], so the {plan} subscription for our team needs to stop at the end of the [quarter|month].",
        "I was [auto-enrolled|signed up automatically] into a membership at checkout and I want it [cancelled|ended] [now|straight away].",
        "No longer need the {subscription} now [my circumstances have changed|the kids have left home|I live on my own]. Please stop it.",
        "How do I cancel if I signed up through [a partner offer|my phone provider|a promotion]?",
        "I asked for my {subscription} to end on {date}. Please make sure it's [actually|properly] cancelled.",
        "i want to end my account. what do i [click|press]",
        "Is there a way to schedule my cancellation for the end of the [contract|year] so I don't forget?",
        "Leaving the {plan} tier. Do I need to [cut up|destroy] my membership card or anything?",
        "Cancel the extra {plan} seat we added last month, we don't need it [anymore|after all].",
        "After the price rise I can't justify the {subscription}. Please end it at the next renewal.",
        "[Why is it so hard to|Why can't I] cancel online? Just end my {plan} membership please.",
        "my free trial of {plan} - want to stop it before the [paid|full] version kicks in",
        "I'd like to close my account [but keep my order history|and get a copy of my data first]. Is that possible?",
    ],
    "product": [
        "What size should I get in the {apparel}? I'm usually a {size}[ in most shops|].",
        "Does the {gadget} work with [my|the] {device}?",
        "Is the {item} [in stock|available right now|still available]?",
        "What's the {apparel} made of[ exactly|]?",
        "Does the {apparel} come in {colour}[ or only the colours shown|]?",
        "How big is the {home}? I need the [dimensions|exact measurements].",
        "Is the {kitchenware} dishwasher [safe|proof][ or hand wash only|]?",
        "How long does the battery last on the {battery}[ on a full charge|]?",
        "Does the {apparel} [run small|come up small|size up or down]?",
        "Is the {gadget} [waterproof|water resistant|splash proof]?",
        "When will the {item} be back in stock[ in {colour}|]?",
        "What's the difference between the standard and the [Pro|Max|Lite] version of the {gadget}?",
        "Is the wood on the {furniture} [solid|real] or veneer?",
        "Does the {appliance} come with a warranty[, and for how long|]?",
        "Will the {gadget} charge with a [USB-C|standard phone] cable?",
        "What does the {home} weigh[ roughly|]?",
        "can the {apparel} go in the [tumble dryer|dryer|washing machine]",
        "Is this {toy} suitable for a {age}-year-old[ boy| girl|]?",
        "Does the {furniture} need [assembly|tools to put together]?",
        "Are the {shoes} vegan, or is the upper real leather?",
        "Is the {colour} more of a dark or a light shade? Hard to tell from the [photo|website].",
        "What voltage does the {electric} [use|run on]? I'm in {country}.",
        "Does the {gadget} support [Bluetooth 5.3|Wi-Fi 6|fast charging]?",
        "Are the {shoes} sizes [UK or EU|US or UK]?",
        "I'm between sizes, {size} or {size2}, for the {apparel}. Which would you recommend?",
        "Does the {appliance} come with a plug or do I need an adapter[ for {country}|]?",
        "How many watts is the {electric}[ on full power|]?",
        "Where is the {item} [made|manufactured]?",
        "What's the fit like on the {apparel} - [slim|fitted] or relaxed?",
        "Does the {audio} have [active noise cancelling|a microphone|a volume limiter]?",
        "Is the {home} safe to have around [cats and dogs|pets|a puppy]?",
        "what is the capacity of the {capacity} in [litres|ml|cups]",
        "Can I use the {cookware} on [an induction|a gas|an electric] hob?",
        "Is the {apparel} see-through at all? Thinking of wearing it to [work|a wedding|the office].",
        "Will you be restocking the {colour} {apparel} in {size}?",
        "Does the {smarthome} work without [Wi-Fi|an internet connection|the app]?",
        "Is the {kitchenware} [BPA free|food safe|made without plastic]?",
        "How loud is the {appliance} when it's running?[ In decibels?|]",
        "What's included in the box with the {gadget}?[ Is there a charger?|]",
        "Is the {smarthome} compatible with [Alexa|Google Home|Apple HomeKit]?",
        "Can I get the {engravable} [engraved|personalised|monogrammed]?",
        "How do I know which size {apparel} to buy? Is there a size [chart|guide]?",
        "Will the {kitchen} fit in a standard kitchen cupboard? What are the [measurements|dimensions]?",
        "Is the leather on the {shoes} genuine[ or faux|]?",
        "Are the colours in the product photos accurate[ for the {colour} one|]?",
        "Does the {screen} have a [headphone jack|USB port|memory card slot]?",
        "is the {home} available in a [bigger|smaller] size",
        "How much [storage|memory] does the {storage} have?",
        "Can the {home} be [used|left] outdoors?",
        "What's the thread count of the [duvet cover|bedding set]?",
        "Does the {apparel} have [pockets|a hood|a zip]?",
        "What's the screen [resolution|size] on the {screen}?",
        "Are the scissors in the craft set suitable for left-handed [kids|children]?",
        "Which model year is the {gadget} you're selling[ on the website|]?",
        "Does the {furniture} arrive [assembled|ready to use] or flat-packed?",
        "What fabric is the lining of the {apparel}[ made of|]?",
        "I have the {device}. Will the {gadget} [connect to|pair with] it?",
        "Is this the latest [version|model] of the {gadget}?",
        "Does the {appliance} have an auto shut-off? I'm a bit [forgetful|scatterbrained].",
        "Is the {apparel} machine washable[ at 40 degrees|]?",
        "What's the heel height on the {shoes}[ in cm|]?",
        "Does the {appliance} work on [110V|240V]?",
        "Will the [case|cover] fit my {device} with the camera bump?",
        "How stretchy is the {apparel}[ fabric|]?",
        "Is there a bigger version of the {capacity} for [families|large households]?",
        "[The {item} is out|Out] of stock in {colour} - any chance it'll come back?",
        "What's the max weight the {furniture} can [hold|take|support]?",
        "Is the {material} [sustainably sourced|recycled|ethically sourced]?",
        "How long is the warranty on the {gadget}[ in {country}|]?",
        "Does the {appliance} have a [timer|delay start|night mode]?",
        "Is there a photo of the {apparel} on a model [my height|around my height] ({height})?",
        "Is the {gadget} easy to set up for someone who's not [techy|good with technology]?",
        "Do you sell replacement [parts|filters|batteries] for the {appliance}?",
        "Is the {capacity} big enough for a [family|household] of {n}?",
        "Does the {apparel} come in [petite or tall|longer] lengths?",
        "Is the battery [replaceable|removable] on the {battery}?",
        "What's the difference between the {colour} and {colour2} versions, apart from the [colour|obvious]?",
        "Will the {home} work in a small [flat|bedroom] or is it too big?",
        "Is the packaging for the {item} [recyclable|plastic-free]?",
        "Is the {gadget} compatible with both {device} and {device2}[ at the same time|]?",
        "Are the {shoes} wide-fit friendly? I have quite [wide|broad] feet.",
        "Can you tell me what the {apparel} is made from? I'm allergic to [wool|latex|nickel|polyester].",
        "I'm {height} - would the {tall} be tall enough for me to use comfortably?",
        "Does the {cookware} have a non-stick coating[, and is it PFAS-free|]?",
        "How warm is the {apparel}? I'm off to {country} in winter and need something proper.",
        "Can I use the {battery} while it's [charging|plugged in]?",
        "Is the {colour} one the same [material|fabric] as the {colour2} one or different?",
        "Does the {screen} have a [matte|glossy] screen? Glare is a problem for me.",
        "Do the {shoes} have removable insoles? I wear [orthotics|custom insoles].",
        "what's the actual length of the {apparel} from shoulder to hem in a {size}",
        "Does the {appliance} come with a [UK|US] plug or an EU plug?",
        "Do you have the {apparel} in a {size} in {colour}, or is that sold out everywhere?",
        "How does the {gadget} [connect|pair] - Bluetooth, Wi-Fi or cable?",
        "Is the {item} [heavy|fragile]? I'd be [carrying it around|taking it travelling] a lot.",
        "Is the {home} easy to clean? [I have two dogs.|We have small kids.|]",
        "what's the difference between the {kitchen} you sell and the one at [half the price|the supermarket]",
        "Does the {gadget} have a [warranty|guarantee] that covers [accidental damage|water damage]?",
        "Will the {apparel} keep me [warm|dry] in [heavy rain|snow|cold wind]?",
        "Can the {cookware} go in the oven? If so, up to what temperature?",
        "Are there any [reviews|customer photos] of the {apparel} in {colour}? I can't tell how it looks [in daylight|on].",
        "Is the {gadget} [refurbished|brand new] or older stock?",
        "Can I buy just a spare [part|cable|attachment] for the {electric}, or do they only come as a set?",
        "Does the {apparel} crease easily? I [travel for work|live out of a suitcase].",
        "How many colours does the {home} come in, and is there a [swatch|sample] I can see?",
        "Is the {gadget} made for left or right-handed use, or both?",
        "Do the {shoes} have good grip on [ice|wet pavements|muddy trails]?",
        "Will the {kitchen} be [restocked|available again] before [Christmas|the summer]?",
    ],
}


# Label-specific follow-up sentences, written to fit any message of their label: one may be
# added after the message body. Split 80/20 between texts and gold like the templates.
FOLLOW_UPS: dict[str, list[str]] = {
    "delivery": [
        "It's a [birthday present|gift] for my {relative}.",
        "The order number is {order}[ if that helps|].",
        "I [need|really need] it before {date}.",
        "I live at {street}, {city}[ in case that matters|].",
        "I'm [working from home|in] all week, so any time is fine.",
        "There's a [safe place|parcel box] by the front door they can use.",
        "It's [quite|pretty] urgent[, sorry|].",
        "I'm away from {date}, so [timing matters|please bear that in mind].",
        "My postcode is {postcode}.",
        "[Sorry|Apologies] if this has been answered somewhere.",
        "I work [shifts|nights], so daytime deliveries are tricky.",
        "It's the first time I've ordered from you.",
        "Our [building|block] has a concierge who can sign for parcels.",
        "I'm [not great|hopeless] with tracking websites, sorry.",
        "[My|Our] house is the one with the [blue door|green gate|red letterbox].",
        "I'd rather not have it left outside[ - things go missing round here|].",
    ],
    "return": [
        "The order number is {order}.",
        "It's [still in the original packaging|never been used|got all its tags on].",
        "I [bought|ordered] it on {date}[ from your website|].",
        "I've [attached|got] [photos|a photo] if you need to see it.",
        "I've never returned anything before, so [sorry if this is obvious|not sure how it works].",
        "I can get to a {courier} point [this week|tomorrow].",
        "The receipt is [in my email|in the box].",
        "[Honestly|Frankly] I'm disappointed, I expected better.",
        "My {relative} [placed the order|picked it out] for me.",
        "The box is a bit [battered|squashed] but the item itself is fine.",
        "Let me know if you need [the serial number|anything else].",
        "The order was under my {relative}'s name.",
        "I still have the [delivery note|packing slip].",
        "I'd like this sorted before [the weekend|I go away], if possible.",
        "I'm a regular customer, so I hope this can be sorted easily.",
        "[Please|Kindly] reply by email, I can't take calls at work.",
    ],
    "payment": [
        "My card ends in {last4}[, if that helps|].",
        "The order number is {order}.",
        "I've got a screenshot [of the checkout page|from my banking app] if you need it.",
        "[Our|The] company name is {last} [Ltd|Trading|& Co].",
        "I need it sorted [before the end of the month|this week] for my [accounts|records].",
        "The email on the account is {email}.",
        "I'm using the [app|website] on my {device}.",
        "My bank [couldn't|wasn't able to] tell me anything useful.",
        "I've shopped with you for years and never had this before.",
        "I'm [self-employed|a sole trader], so the paperwork matters.",
        "Please reply by email rather than phone.",
        "This was for order {order}, placed on {date}.",
        "[Sorry|Apologies] if this is a silly question.",
        "I'm [a bit|quite] confused by the whole thing.",
        "It's [a business|a personal] account.",
        "I'd appreciate a quick answer, it's [payday|the end of the month] soon.",
    ],
    "password": [
        "My username is {username}.",
        "The account email is {email}.",
        "I'm [on|using] my {device}.",
        "I'm not very [techy|good with computers], so simple steps please.",
        "I've had this account for {years} years.",
        "[Please|Can you] reply to this email rather than in the app.",
        "I'm [a bit|quite] worried about security.",
        "I don't use social logins[ at all|].",
        "I can answer any security questions you need.",
        "My last order was {order}, if that helps [prove it's me|with verification].",
        "It's [a shared|a family] account.",
        "I use {browser}, if that makes a difference.",
        "I need to [see my orders|use my points] [soon|this week].",
        "[Sorry|Apologies] if this is obvious.",
        "The phone number on the account ends in {last4}.",
        "I'm [abroad|travelling] at the moment, in {country}.",
    ],
    "cancel": [
        "My member number is {member}.",
        "The account email is {email}.",
        "I [signed up|joined] on {date}.",
        "I [just|simply] don't use it enough anymore.",
        "Please confirm [by email|in writing] once it's done.",
        "I don't want [any offers|a discount] to stay.",
        "It's [too expensive|not worth it] for me right now.",
        "I've been a member for {years} years.",
        "I've already [removed|deleted] the app from my phone.",
        "Please make sure it doesn't [renew|roll over] again.",
        "My {relative} and I [share|used to share] it.",
        "[Thanks for everything|No hard feelings], it's just not for me.",
        "I'm [moving|going travelling] for a year.",
        "I've found a cheaper option elsewhere.",
        "[Please|Kindly] don't call me about it, email is fine.",
        "I might come back [one day|next year], but not now.",
    ],
    "product": [
        "I'm [thinking of|planning on] buying it as a gift for my {relative}.",
        "The product page doesn't [say|mention it].",
        "I've [looked|searched] through the reviews but couldn't find [an answer|anything].",
        "I want to be sure before I order.",
        "I'm [in|based in] {country}[, if that matters|].",
        "Budget is around {amount}.",
        "I [had|used to have] a similar one and loved it.",
        "Photos on the site are a bit [small|blurry].",
        "I'd [buy two|order several] if the answer's yes.",
        "I can't decide between this and a [cheaper|similar] one.",
        "It's for my {relative}'s birthday [next week|on {date}].",
        "[Sorry|Apologies], I know it's a picky question.",
        "The [spec sheet|details tab] on your website doesn't load for me.",
        "I'd rather ask than [guess|get it wrong].",
        "A friend [recommended|has] it and I'm tempted.",
        "I've been burned by cheap ones before.",
    ],
}


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------

_ALTERNATIVES = re.compile(r"\[([^\[\]]*)\]")
_ARTICLE_SLOT = re.compile(r"\b([aA]) \{(\w+)\}")  # "a {item}": the article follows the value
_SLOT_OR_ARTICLE = re.compile(r"\{(?:([aA])~)?(\w+)\}")  # "{item}", or "{a~item}" from the above
_WORD = re.compile(r"\w+")
_APOSTROPHES = str.maketrans("", "", "'\u2019")
# First words that keep their capital after "Hi, ..." (pronoun I and names used at a start).
_KEEP_CAPITAL = {"I", "I'm", "I've", "I'd", "I'll", "PayPal", "Apple", "Google", "Face", "DELIVERY",
                 "REFUND", "CANCEL", "Sign"} | set(COURIERS) | set(FIRST_NAMES)  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Words as potstill.teacher.diversity.tokenize gives them."""
    return _WORD.findall(text.lower().translate(_APOSTROPHES))


def shingles(text: str) -> set[tuple[str, ...]]:
    """Word shingles as potstill.teacher.diversity.shingles gives them (shingle=3)."""
    words = tokenize(text)
    if 0 < len(words) < SHINGLE:
        return {tuple(words)}
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def _with_article(article: str, value: str) -> str:
    """Return `article` ("a"/"A") or its "an" form, then `value`, by how `value` is spoken."""
    word = value.split(" ")[0]
    if word[0].isdigit():
        an = word[0] == "8" or re.match(r"1[18]\b", word) is not None
    elif word.replace("-", "").replace("$", "").isupper() and len(word) <= 5:  # XL, USB-C, EU, A$
        an = word[0] in "AEFHILMNORSX"
    else:
        an = word[0].lower() in "aeiou" and not word.lower().startswith(("one", "uni", "us", "eu"))
        an = an or word.startswith("Xb")
    return (article + "n" if an else article) + " " + value


def expand(template: str, r: random.Random) -> str:
    """Resolve [a|b] alternatives (innermost first) and {slot} fillers of one template."""
    while True:
        text = _ALTERNATIVES.sub(lambda m: r.choice(m.group(1).split("|")), template)
        if text == template:
            break
        template = text
    values: dict[str, str] = {}
    prices: dict[str, str] = {}
    money = None

    def fill(m: re.Match) -> str:
        nonlocal money
        name = m.group(2)
        if name in values:
            return values[name]
        base = name[:-1] if name.endswith("2") else name
        if base == "amount":
            money = money or _currency(r)
            if name == "amount2" and "amount" in prices:  # a second amount: 10-60% above the first
                value = money(f"{float(prices['amount'].replace(',', '')) * r.uniform(1.1, 1.6):,.2f}")
            else:
                prices[name] = _price(r)
                value = money(prices[name])
        elif base == "email":  # the sign-off's name, if there is one, is the address's name
            value = _email(r, values.get("first"))
        elif base in GENERATED:
            value = GENERATED[base](r)
        else:
            pool = POOLS[base]
            taken = values.get(base)
            value = r.choice([v for v in pool if v != taken])
        while name != base and base in GENERATED and value == values.get(base):  # "{x2}" differs from "{x}"
            value = GENERATED[base](r)
        values[name] = value
        return value

    template = _ARTICLE_SLOT.sub(r"{\1~\2}", template)
    text = _SLOT_OR_ARTICLE.sub(lambda m: _with_article(m.group(1), fill(m)) if m.group(1) else fill(m), template)
    return re.sub(r"\s+([,.?!])", r"\1", re.sub(r"\s+", " ", text)).strip()


def _typo(word: str, r: random.Random) -> str:
    i = r.randrange(1, len(word) - 1)
    kind = r.randrange(3)
    if kind == 0:  # swap two neighbouring letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # double a letter


_TEXTSPEAK = [(r"\byou\b", "u"), (r"\bplease\b", "pls"), (r"\bthanks\b", "thx"), (r"\bare\b", "r"),
              (r"\bbecause\b", "cos"), (r"\btomorrow\b", "tmrw"), (r"\bwith\b", "w/")]  # fmt: skip


def restyle(text: str, r: random.Random) -> str:
    """Sometimes change the register: typos, text-speak, all lowercase, no punctuation."""
    if r.random() < 0.08:
        words = text.split(" ")
        candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
        for i in r.sample(candidates, min(len(candidates), r.randint(1, 2))):
            words[i] = _typo(words[i], r)
        text = " ".join(words)
    if r.random() < 0.07:
        for pattern, short in _TEXTSPEAK:
            text = re.sub(pattern, short, text, flags=re.IGNORECASE)
    roll = r.random()
    if roll < 0.12:
        text = text.lower()
    elif roll < 0.17:
        text = re.sub(r"[.!,]+(\s|$)", r"\1", text).strip()
        text = text[0].lower() + text[1:]
    return text


def compose(template: str, follow_ups: list[str], r: random.Random) -> tuple[str, str]:
    """(message, body): greeting?, preamble?, body (the template, follow-up?), sign-off?; register.

    The body is the label-specific content; greeting, preamble and sign-off are label-neutral.
    """
    body = expand(template, r)
    if r.random() < P_FOLLOW_UP:
        body += " " + expand(r.choice(follow_ups), r)
    parts = [body]
    if r.random() < P_PREAMBLE:
        parts.insert(0, expand(r.choice(PREAMBLES), r))
    if r.random() < P_GREETING:
        greeting, separators = r.choice(GREETINGS)
        sep = GREETING_SEPARATORS[r.choice(separators)]
        first = parts[0].split(" ", 1)[0]
        if sep in (",", "") and first not in _KEEP_CAPITAL and first[1:].islower():
            parts[0] = parts[0][0].lower() + parts[0][1:]
        parts.insert(0, expand(greeting, r) + sep)
    if r.random() < P_CLOSER:
        parts.append(expand(r.choice(CLOSERS), r))
    return restyle(" ".join(parts), r), body


class NearDupIndex:
    """Shingle sets with an inverted index: is a new text a near-duplicate of any indexed one?"""

    def __init__(self) -> None:
        self.sets: list[set] = []
        self.postings: dict[tuple, list[int]] = defaultdict(list)

    def near_duplicate(self, sh: set) -> bool:
        shared: Counter[int] = Counter()
        for s in sh:
            shared.update(self.postings.get(s, ()))
        for j, inter in shared.items():
            if inter / (len(sh) + len(self.sets[j]) - inter) >= NEAR_DUP:
                return True
        return False

    def add(self, sh: set) -> None:
        for s in sh:
            self.postings[s].append(len(self.sets))
        self.sets.append(sh)


def split(items: list[str], r: random.Random) -> tuple[list[str], list[str]]:
    """(train part, gold part) of a shuffled copy of `items`, disjoint, gold about GOLD_FRACTION."""
    items = list(items)
    assert len(set(items)) == len(items), f"repeated entry: {Counter(items).most_common(1)}"
    r.shuffle(items)
    n_gold = round(len(items) * GOLD_FRACTION)
    return items[n_gold:], items[:n_gold]


def generate(
    label: str,
    templates: list[str],
    follow_ups: list[str],
    count: int,
    r: random.Random,
    seen: set[str],
    own: NearDupIndex,
    bodies: NearDupIndex,
    others: tuple[NearDupIndex, ...] = (),
) -> list[str]:
    """`count` new messages from `templates` (round robin), none duplicating or near-duplicating.

    Besides whole messages, bodies are compared too: a body that near-duplicates an earlier body
    of the same file is rejected even when a different greeting or sign-off would dilute the
    whole message's similarity below the threshold.
    """
    out: list[str] = []
    active = list(templates)
    misses = dict.fromkeys(templates, 0)
    while len(out) < count:
        if not active:
            raise RuntimeError(f"{label}: templates exhausted after {len(out)} of {count} messages")
        for template in list(active):
            if len(out) == count:
                break
            for _ in range(8):
                text, body = compose(template, follow_ups, r)
                if not text or len(text) > MAX_CHARS or text in seen:
                    continue
                sh, body_sh = shingles(text), shingles(body)
                if bodies.near_duplicate(body_sh) or own.near_duplicate(sh):
                    continue
                if any(index.near_duplicate(sh) for index in others):
                    continue
                seen.add(text)
                own.add(sh)
                bodies.add(body_sh)
                out.append(text)
                misses[template] = 0
                break
            else:
                misses[template] += 1
                if misses[template] >= 3:
                    active.remove(template)
    return out


def splits(r: random.Random) -> tuple[dict, dict]:
    """({label: (train, gold) templates}, {label: (train, gold) follow-ups}), drawn in that order."""
    templates = {label: split(TEMPLATES[label], r) for label in LABELS}
    follow_ups = {label: split(FOLLOW_UPS[label], r) for label in LABELS}
    return templates, follow_ups


def build() -> tuple[list[dict], list[dict]]:
    """(rows of texts.jsonl, rows of gold.jsonl), the same on every run."""
    r = random.Random(SEED)
    templates, follow_ups = splits(r)
    seen: set[str] = set()
    text_index, text_bodies = NearDupIndex(), NearDupIndex()
    texts: list[tuple[str, str]] = []
    for label in LABELS:
        train_templates, train_follow_ups = templates[label][0], follow_ups[label][0]
        made = generate(label, train_templates, train_follow_ups, TEXT_COUNTS[label], r, seen, text_index, text_bodies)
        texts += [(label, t) for t in made]
    gold_index, gold_bodies = NearDupIndex(), NearDupIndex()
    gold: list[tuple[str, str]] = []
    for label in LABELS:
        gold_templates, gold_follow_ups = templates[label][1], follow_ups[label][1]
        made = generate(
            label, gold_templates, gold_follow_ups, GOLD_PER_LABEL, r, seen, gold_index, gold_bodies, (text_index,)
        )
        gold += [(label, t) for t in made]
    r.shuffle(texts)
    r.shuffle(gold)
    text_rows = [{"id": f"t-{i:05d}", "text": t} for i, (_, t) in enumerate(texts, 1)]
    gold_rows = [{"id": f"g-{i:05d}", "text": t, "label": label} for i, (label, t) in enumerate(gold, 1)]
    return text_rows, gold_rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write into (default: next to this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    texts, gold = build()
    write_jsonl(args.out / "texts.jsonl", texts)
    write_jsonl(args.out / "gold.jsonl", gold)
    per_label = Counter(row["label"] for row in gold)
    print(f"texts.jsonl: {len(texts)} rows; gold.jsonl: {len(gold)} rows {dict(sorted(per_label.items()))}")


if __name__ == "__main__":
    main()
