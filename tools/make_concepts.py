"""Generate gcav_nb's bundled text data (gcav_nb/data/*.json) from templates and word lists.

Run: `python tools/make_concepts.py` (deterministic: seed 0; rewrites concepts.json, random_pool.json,
templates.json). Every sentence below is produced by filling a template with words from the lists in this
file; nothing is downloaded or copied from a dataset. See gcav_nb/data/README.md for the provenance.
"""
import hashlib, json, random, re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1]/"gcav_nb"/"data"
SEED, N_PER_CONCEPT, N_POOL = 0, 120, 3000

def fill(templates, slots, n, seed, extra=None):
    "Up to `n` distinct sentences: every combination is possible, drawn at random (seeded), first letter capitalised."
    rng = random.Random(seed); out, seen, tries = [], set(), 0
    while len(out) < n and tries < 200 * n:
        tries += 1
        t = rng.choice(templates)
        vals = {k: rng.choice(v) for k, v in slots.items()}
        # a second draw of the same list for templates that use a slot twice ({adj} and {adj2})
        vals.update({k + "2": rng.choice([w for w in v if w != vals[k]] or v) for k, v in slots.items()})
        s = t.format(**vals)
        s = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])(?!use|uni|one|eu)", r"\1n ", s)  # "a icy" -> "an icy"
        s = s[0].upper() + s[1:]
        if s not in seen: seen.add(s); out.append(s)
    if len(out) < n: raise RuntimeError(f"only {len(out)} distinct sentences for {templates[0]!r}")
    return out

# ---------------------------------------------------------------- concepts
ITEMS = ["service", "hotel room", "book", "film", "concert", "headphones", "laptop", "rental car", "haircut", "app",
         "guided tour", "yoga class", "phone", "jacket", "delivery", "support team", "train journey", "museum visit",
         "desk chair", "camera", "backpack", "website", "course", "theatre show", "bicycle", "mattress", "printer"]
POS_ADJ = ["excellent", "wonderful", "fantastic", "brilliant", "superb", "outstanding", "delightful", "amazing",
           "impressive", "lovely", "perfect", "marvellous", "terrific", "first-rate", "exceptional"]
NEG_ADJ = ["terrible", "awful", "dreadful", "disappointing", "horrible", "useless", "appalling", "poor", "shoddy",
           "frustrating", "unacceptable", "rubbish", "miserable", "broken", "second-rate"]
ADV = ["really", "truly", "absolutely", "genuinely", "simply", "completely", "utterly", "remarkably"]
CONCEPTS = {}

CONCEPTS["praise"] = dict(description="positive reviews of products and services (no food, no weather)", examples=fill([
    "the {item} was {adv} {pos}.", "I loved the {item}; it was {pos} from start to finish.", "what a {pos} {item}!",
    "five stars: the {item} is {pos} and {pos2}.", "the {item} exceeded every expectation I had, {adv} {pos}.",
    "highly recommended, the {item} was {pos}.", "I would happily buy this {item} again, it is {pos}.",
    "thank you for a {pos} {item}, we were {adv} pleased.", "the {item} made my week, {adv} {pos}.",
    "honestly the best {item} I have had, {pos} and {pos2}."],
    dict(item=ITEMS, pos=POS_ADJ, adv=ADV), N_PER_CONCEPT, SEED + 1))

CONCEPTS["complaint"] = dict(description="negative reviews and complaints about products and services", examples=fill([
    "the {item} was {adv} {neg}.", "I want a refund: the {item} was {neg}.", "never again, the {item} was {neg} and {neg2}.",
    "one star: the {item} is {neg}.", "the {item} stopped working after {dur}, {adv} {neg}.",
    "avoid this {item}, it was {neg}.", "I am still waiting for someone to fix the {item}; {adv} {neg}.",
    "what a {neg} {item}, nobody answered my emails.", "the {item} was {neg} and the staff did not care.",
    "I regret paying for the {item}, it was {neg}."],
    dict(item=ITEMS, neg=NEG_ADJ, adv=ADV, dur=["two days", "a week", "an hour", "one use", "a month", "ten minutes"]),
    N_PER_CONCEPT, SEED + 2))

DISHES = ["risotto", "lentil soup", "paella", "omelette", "pad thai", "ratatouille", "shepherd's pie", "falafel wrap",
          "minestrone", "chicken curry", "vegetable stew", "pancakes", "couscous salad", "fish pie", "goulash", "dumplings",
          "porridge", "fried rice", "lasagne", "bean chili", "tomato pasta", "mushroom pie"]
INGR = ["rice", "onions", "garlic", "tomatoes", "lentils", "carrots", "potatoes", "flour", "eggs", "butter", "olive oil",
        "chickpeas", "peppers", "cheese", "spinach", "beans", "noodles", "ginger", "cumin", "parsley", "milk", "mushrooms"]
CONCEPTS["food"] = dict(description="neutral descriptions of dishes and ingredients (no opinion)", examples=fill([
    "the {dish} is made with {i} and {i2}.", "a portion of {dish} contains {i}, {i2} and salt.",
    "{dish} is usually served {serve}.", "to make {dish}, the {i} is {method} first.",
    "the recipe for {dish} lists {i} as the main ingredient.", "{dish} is cooked for about {mins} minutes.",
    "the {dish} on the menu comes with {i}.", "this version of {dish} uses {i} instead of {i2}."],
    dict(dish=DISHES, i=INGR, serve=["warm", "with bread", "in a bowl", "on a plate", "with rice", "at lunch", "cold"],
         method=["chopped", "fried", "boiled", "sliced", "washed", "grated", "soaked"], mins=["ten", "twenty", "thirty", "forty"]),
    N_PER_CONCEPT, SEED + 3))

PLACES = ["library", "post office", "station", "town hall", "bank", "pharmacy", "museum", "swimming pool", "office",
          "bus stop", "school", "bookshop", "hospital", "gym", "garage"]
TASKS = ["renew a passport", "reset my password", "book a meeting room", "change the printer cartridge",
         "register for the course", "update the software", "open a bank account", "send a parcel abroad",
         "cancel the subscription", "connect to the network", "file the report", "replace a light bulb"]
THINGS = ["form", "timetable", "charger", "key", "ticket machine", "map", "manual", "receipt", "password", "parking space"]
CONCEPTS["questions"] = dict(description="questions (interrogative style) on everyday neutral topics", examples=fill([
    "what time does the {place} open on {day}?", "how do I {task}?", "where can I find the {thing}?",
    "could you tell me how to {task}?", "is there a {place} near here?", "who is responsible for the {thing}?",
    "when does the {place} close on {day}?", "do you know where the {thing} is?", "can I {task} online?",
    "why is the {place} closed on {day}?", "which {thing} should I use?", "how long does it take to {task}?"],
    dict(place=PLACES, task=TASKS, thing=THINGS, day=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]),
    N_PER_CONCEPT, SEED + 4))

OUT_PLACES = ["the town square", "the beach", "the city", "the valley", "the harbour", "the high street", "the village",
              "the field", "the car park", "the garden", "the playground", "the market"]
CONCEPTS["hot_weather"] = dict(description="hot weather: heat, sun, summer", examples=fill([
    "the afternoon was {hot}, and {pl} was empty.", "it was {t} degrees in the shade by noon.",
    "a heatwave settled over {pl} for {dur}.", "the sun beat down on {pl} and everyone looked for shade.",
    "the air in {pl} was {hot} and heavy.", "by midday the heat in {pl} was {hot}.",
    "people in {pl} carried water bottles against the {hot} sun.", "the summer heat made {pl} shimmer.",
    "the thermometer in {pl} showed {t} degrees.", "it was a {hot} summer day, without a cloud in the sky."],
    dict(hot=["scorching", "blazing", "sweltering", "baking", "boiling", "sultry", "stifling", "hot", "burning"],
         t=["35", "38", "40", "41", "43", "37", "39", "36"], pl=OUT_PLACES, dur=["a week", "ten days", "the whole summer", "days"]),
    N_PER_CONCEPT, SEED + 5))

CONCEPTS["cold_weather"] = dict(description="cold weather: frost, snow, winter", examples=fill([
    "the morning was {cold}, and {pl} was covered in frost.", "it was {t} degrees below zero at dawn.",
    "snow fell on {pl} for {dur}.", "an icy wind swept through {pl} all night.",
    "the air in {pl} was {cold} and sharp.", "by evening {pl} was frozen solid.",
    "people in {pl} wore thick coats against the {cold} wind.", "the winter frost made {pl} glitter.",
    "the thermometer in {pl} showed minus {t} degrees.", "it was a {cold} winter day with snow on the ground."],
    dict(cold=["freezing", "icy", "bitter", "frosty", "chilly", "cold", "wintry", "biting", "snowy"],
         t=["5", "8", "10", "12", "15", "20", "7", "3"], pl=OUT_PLACES, dur=["a week", "two days", "the whole winter", "hours"]),
    N_PER_CONCEPT, SEED + 6))

ANIMALS = ["fox", "rabbit", "horse", "owl", "deer", "badger", "squirrel", "heron", "goat", "cat", "dog", "otter",
           "hedgehog", "sparrow", "cow", "sheep", "frog", "duck", "mouse", "beaver"]
CONCEPTS["animals"] = dict(description="animals and what they do", examples=fill([
    "the {a} {act} near the {loc}.", "a young {a} was {acting} by the {loc}.", "we watched a {a} {act} at the edge of the {loc}.",
    "the {a} and the {a2} shared the {loc}.", "a {a} has lived by the {loc} for years.", "the farmer's {a} {act} every morning.",
    "a small {a} {act} behind the {loc}.", "the {a} {act} while the {a2} slept."],
    dict(a=ANIMALS, act=["ran", "hid", "rested", "climbed", "swam", "hunted", "played", "dug a burrow", "called out"],
         acting=["sleeping", "feeding", "grooming", "running", "hiding", "nesting"],
         loc=["river", "barn", "hedge", "meadow", "pond", "woods", "fence", "stream", "hill"]),
    N_PER_CONCEPT, SEED + 7))

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
CONCEPTS["numbers"] = dict(description="numbers, dates, times and quantities", examples=fill([
    "the meeting is on {m} {d}, {y}.", "she paid {n} dollars for {k} tickets.", "flight {n} leaves at {h}:{mm}.",
    "the population grew from {n} to {n2} between {y} and {y2}.", "the invoice dated {d} {m} {y} totals {n} euros.",
    "room {n} is on floor {k}.", "the train arrives at {h}:{mm} on {m} {d}.", "{k} out of {n} people answered the survey in {y}.",
    "the building was finished in {y} after {k} years of work.", "order number {n} was shipped on {m} {d}."],
    dict(m=MONTHS, d=[str(i) for i in range(1, 29)], y=[str(y) for y in range(1950, 2031, 3)],
         n=[str(i) for i in (12, 48, 75, 120, 256, 304, 512, 999, 1024, 1500, 2048, 3600, 4096, 7200)],
         k=[str(i) for i in range(2, 13)], h=[str(i) for i in range(6, 23)], mm=["00", "15", "30", "45", "05", "50"]),
    N_PER_CONCEPT, SEED + 8))

TOOLS = ["whisk", "ladle", "spatula", "colander", "grater", "peeler", "rolling pin", "cutting board", "chef's knife",
         "saucepan", "frying pan", "pair of tongs", "measuring jug", "sieve", "can opener", "garlic press", "mixing bowl",
         "kettle", "blender", "pestle and mortar", "bread knife", "potato masher"]
CONCEPTS["kitchen_tools"] = dict(description="kitchen tools and utensils", examples=fill([
    "the {t} hangs next to the {t2}.", "she washed the {t} and put it in the drawer.", "a {mat} {t} is easy to clean.",
    "he bought a new {t} at the hardware shop.", "the {t} is kept on the shelf above the {t2}.", "please pass me the {t}.",
    "the handle of the {t} is made of {mat}.", "the {t} and the {t2} are in the dishwasher.",
    "an old {t} was in the box with the {t2}."],
    dict(t=TOOLS, mat=["steel", "wooden", "plastic", "silicone", "cast iron", "ceramic", "copper", "bamboo"]),
    N_PER_CONCEPT, SEED + 9))

# ---------------------------------------------------------------- random pool (neutral, none of the concepts' topics)
SUBJ = ["the committee", "my neighbour", "the new manager", "a student", "the librarian", "the engineer", "our teacher",
        "the architect", "a visitor", "the driver", "the secretary", "my cousin", "the council", "the editor", "a volunteer",
        "the pilot", "the gardener", "the lawyer", "the clerk", "the designer", "the team", "the director", "a tourist"]
VERB = ["reviewed", "signed", "moved", "printed", "checked", "painted", "repaired", "opened", "described", "drew",
        "copied", "carried", "found", "updated", "borrowed", "returned", "measured", "labelled", "tidied", "packed"]
OBJ = ["the letter", "the documents", "the old map", "a wooden box", "the plans", "the notice", "the blue folder",
       "the curtains", "the spare keys", "a new sign", "the shelves", "the contract", "the photographs", "the lamp",
       "the schedule", "a small parcel", "the railings", "the windows", "the brochure", "the notebook"]
WHERE = ["in the office", "at the station", "near the bridge", "in the hallway", "by the entrance", "upstairs",
         "at the library", "in the workshop", "outside the hall", "at the corner shop", "in the attic", "on the top floor",
         "in the basement", "behind the desk", "at the reception", "in the studio"]
WHEN = ["this morning", "after lunch", "before the meeting", "yesterday", "on the way home", "later that day",
        "in the evening", "last week", "at the weekend", "earlier"]
POOL = fill(["{s} {v} {o} {w} {t}.", "{t}, {s} {v} {o} {w}.", "{s} {v} {o} {t}.", "{w}, {s} {v} {o}.",
             "{s} {v} {o} and {o2} {w}.", "{s} and {s2} {v} {o} {w}."],
            dict(s=SUBJ, v=VERB, o=OBJ, w=WHERE, t=WHEN), N_POOL, SEED + 100)

# ---------------------------------------------------------------- prompt templates for TCAV inputs
TEMPLATES = {
    "sentiment": dict(answers=[" positive", " negative"], templates=[
        "Review: {text}\nThe sentiment of this review is",
        "{text} The sentiment of this review is",
        "Customer review: \"{text}\" The sentiment of this review is",
        "Here is a review. {text} The sentiment of this review is",
        "Read the review and judge it.\nReview: {text}\nThe sentiment of this review is",
        "Feedback received: {text}\nThe sentiment of this review is",
        "A customer wrote: {text} The sentiment of this review is",
        "Online comment: {text}\nThe sentiment of this review is",
        "Review text: {text}\nQuestion: is it positive or negative?\nAnswer: The sentiment of this review is",
        "\"{text}\" - a verified buyer. The sentiment of this review is",
        "Product review\n{text}\nThe sentiment of this review is",
        "Someone said: {text} The sentiment of this review is"]),
    "weather": dict(answers=[" cold", " hot"], templates=[
        "{text} The weather that day was",
        "Weather diary: {text} It was very",
        "{text} Outside, it was really",
        "Report: {text} In one word, the day was",
        "{text} Everyone agreed that the weather was",
        "Diary entry: {text} I remember that it was",
        "{text} The forecast for tomorrow is just as",
        "Postcard: {text} Here it is very",
        "{text} The temperature felt",
        "Note to self: {text} Today was"]),
    "topic": dict(answers=[" food", " animals", " weather", " numbers"], templates=[
        "{text} This sentence is about",
        "Text: {text}\nTopic:",
        "{text} In short, the text talks about",
        "Sentence: \"{text}\" The main subject is",
        "Classify the topic. {text} Topic:",
        "{text} The theme of this text is",
        "Passage: {text}\nThe passage is mostly about",
        "{text} What is this about? It is about"]),
    "continuation": dict(answers=[], templates=[
        "{text}", "{text} Then", "{text} After that,", "Story: {text} Next,", "{text} Meanwhile,", "{text} Later,"]),
}

def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for k, v in CONCEPTS.items(): assert len(v["examples"]) == N_PER_CONCEPT, k
    texts = [e for v in CONCEPTS.values() for e in v["examples"]]
    assert len(texts) == len(set(texts)), "a sentence appears in two concepts"
    pool = [p for p in POOL if p not in set(texts)]
    (OUT/"concepts.json").write_text(json.dumps(dict(version=1, seed=SEED, generator="tools/make_concepts.py", concepts=CONCEPTS), indent=1))
    (OUT/"random_pool.json").write_text(json.dumps(dict(version=1, seed=SEED + 100, generator="tools/make_concepts.py", texts=pool), indent=1))
    (OUT/"templates.json").write_text(json.dumps(dict(version=1, generator="tools/make_concepts.py", families=TEMPLATES), indent=1))
    for f in ("concepts.json", "random_pool.json", "templates.json"):
        print(f, hashlib.sha256((OUT/f).read_bytes()).hexdigest()[:12])
    print({k: len(v["examples"]) for k, v in CONCEPTS.items()}, "pool", len(pool),
          "templates", sum(len(v["templates"]) for v in TEMPLATES.values()))

if __name__ == "__main__": main()
