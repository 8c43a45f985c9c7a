#!/usr/bin/env python3
"""Generate radit's synthetic knowledge dataset (stdlib only, seeded, deterministic).

Invents ~150 fictional entities (people, towns, companies, inventions) with facts, writes a
small corpus describing them and QA pairs whose answers can only be known from that corpus.

    python3 scripts/make_synthetic_dataset.py [--seed 20240501] [--out datasets/synthetic]

Same seed, same bytes. See datasets/README.md for the formats.
"""

import argparse
import json
import os
import random

N_PEOPLE, N_TOWNS, N_COMPANIES, N_INVENTIONS = 60, 35, 30, 25
N_TRAIN, N_DEV = 600, 150

ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "qu", "r",
          "s", "st", "t", "th", "tr", "v", "w", "z", "sh", "ch", "pl", "fl"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
CODAS = ["", "", "n", "r", "l", "s", "th", "m", "nd", "rk", "sk", "x", "ll", "v"]
TOWN_SUFFIX = ["moor", "haven", "ford", "wick", "stead", "holm", "mere", "gate", "by", "ton"]
COMPANY_SUFFIX = ["Works", "Industries", "Foundry", "Instruments", "Manufactory", "Company"]
INVENTION_NOUN = ["lamp", "loom", "engine", "compass", "kettle", "press", "telescope", "clock",
                  "pump", "barometer", "bellows", "lantern", "sextant", "mill", "organ"]
PROFESSIONS = ["cartographer", "glassblower", "beekeeper", "violin maker", "astronomer",
               "clockmaker", "botanist", "lighthouse keeper", "bookbinder", "chemist",
               "shipwright", "weaver", "surveyor", "potter", "engraver", "archivist",
               "apothecary", "bellfounder", "mapmaker", "stonemason"]
INSTRUMENTS = ["cello", "oboe", "harp", "lute", "bassoon", "zither", "flute", "viola",
               "accordion", "harpsichord", "dulcimer", "trombone"]
MATERIALS = ["brass", "copper", "oak", "pewter", "walnut", "iron", "bronze", "glass",
             "silver", "porcelain"]
PRODUCTS = ["copper kettles", "weather balloons", "pocket watches", "sailcloth", "lamp oil",
            "printing presses", "church bells", "spectacles", "garden tools", "canvas tents",
            "fountain pens", "rope", "ceramic tiles", "bicycles", "barometers", "tin toys"]
FEST_ADJ = ["Lantern", "Amber", "Heron", "Thistle", "Copper", "Willow", "Frost", "Saffron",
            "Juniper", "Cobalt", "Moss", "Ember"]
FEST_NOUN = ["Moth", "Tide", "Harvest", "Bell", "Kite", "Honey", "Ferry", "Candle", "Fiddle"]
PURPOSES = ["measuring fog over the harbour", "spinning wool twice as fast", "keeping bread warm",
            "reading the depth of wells", "signalling between hilltops", "pressing dried flowers",
            "counting passing carts", "drying ink on fresh pages", "pumping water uphill",
            "predicting hailstorms"]


class Namer:
    """Invents pronounceable names that never repeat."""

    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def word(self, syllables):
        while True:
            w = "".join(self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + self.rng.choice(CODAS)
                        for _ in range(syllables))
            if 4 <= len(w) <= 10 and w not in self.used:
                self.used.add(w)
                return w.capitalize()


def build_world(rng):
    namer = Namer(rng)
    regions = ["the " + namer.word(2) + " Valley" for _ in range(4)] + \
              [namer.word(2) + " Province" for _ in range(3)]
    rivers = ["the " + namer.word(2) + " River" for _ in range(12)]

    towns = []
    for _ in range(N_TOWNS):
        towns.append({"kind": "town", "name": namer.word(1) + rng.choice(TOWN_SUFFIX),
                      "region": rng.choice(regions), "founded": rng.randint(1150, 1820),
                      "river": rng.choice(rivers),
                      "festival": "the %s %s Festival" % (rng.choice(FEST_ADJ), rng.choice(FEST_NOUN))})
    people = []
    for _ in range(N_PEOPLE):
        people.append({"kind": "person", "name": namer.word(rng.choice([1, 2])) + " " + namer.word(2),
                       "born": rng.randint(1840, 1960), "hometown": rng.choice(towns)["name"],
                       "profession": rng.choice(PROFESSIONS), "instrument": rng.choice(INSTRUMENTS)})
    for i, p in enumerate(people):
        p["mentor"] = rng.choice([q for j, q in enumerate(people) if j != i])["name"]
    for t in towns:
        t["mayor"] = rng.choice(people)["name"]

    companies = []
    founders = rng.sample(people, N_COMPANIES)
    for f in founders:
        companies.append({"kind": "company",
                          "name": namer.word(2) + " " + rng.choice(COMPANY_SUFFIX),
                          "founder": f["name"], "founded": f["born"] + rng.randint(24, 45),
                          "hq": rng.choice(towns)["name"], "product": rng.choice(PRODUCTS),
                          "employees": rng.randint(12, 4800)})
    for p in people:
        p["employer"] = rng.choice(companies)["name"]

    by_name = {p["name"]: p for p in people}
    inventions = []
    for _ in range(N_INVENTIONS):
        inventor = rng.choice(people)
        inventions.append({"kind": "invention",
                           "name": "the " + namer.word(2) + " " + rng.choice(INVENTION_NOUN),
                           "inventor": inventor["name"],
                           "year": inventor["born"] + rng.randint(20, 55),
                           "maker": rng.choice(companies)["name"],
                           "material": rng.choice(MATERIALS), "purpose": rng.choice(PURPOSES)})
    for c in companies:
        by_name[c["founder"]].setdefault("founded_companies", []).append(c["name"])
    for inv in inventions:
        by_name[inv["inventor"]].setdefault("inventions", []).append(inv["name"])
    return people, towns, companies, inventions


def pick(rng, templates, **kw):
    return rng.choice(templates).format(**kw)


def cap(s):
    return s[0].upper() + s[1:]


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def corpus(rng, people, towns, companies, inventions):
    docs = []

    def add(title, sentences):
        docs.append({"id": "doc%04d" % len(docs), "title": title, "text": " ".join(sentences)})

    for p in people:
        n, prof = p["name"], p["profession"]
        add(n, [
            pick(rng, ["{n} was born in {y} in the town of {t}.",
                       "Born in {t} in {y}, {n} grew up near the market square.",
                       "{n} (born {y}) is a native of {t}."], n=n, y=p["born"], t=p["hometown"]),
            pick(rng, ["By trade {s} was {a} {p}.", "{s} worked as {a} {p} for most of {h} life.",
                       "{s} is remembered as {a} {p}."],
                 s=n.split()[-1], a=article(prof), p=prof, h=rng.choice(["their", "a long"])),
            pick(rng, ["In the evenings {s} played the {i}.", "{s} was also a keen {i} player.",
                       "Friends recall that {s} played the {i} at every gathering."],
                 s=n.split()[-1], i=p["instrument"]),
        ])
        career = [pick(rng, ["{n} was employed by {c}.", "For many years {n} worked at {c}.",
                             "{n} held a post at {c}."], n=n, c=p["employer"]),
                  pick(rng, ["{n} learned the craft from {m}.", "{n}'s mentor was {m}.",
                             "As a young apprentice, {n} studied under {m}."], n=n, m=p["mentor"])]
        for c in p.get("founded_companies", []):
            career.append("%s also founded %s." % (n, c))
        for inv in p.get("inventions", []):
            career.append("%s is credited with %s." % (n, inv))
        add(n + " (career)", career)
    for t in towns:
        add(t["name"], [
            pick(rng, ["{t} is a town in {r}.", "The town of {t} lies in {r}.",
                       "{t}, in {r}, is a small market town."], t=t["name"], r=t["region"]),
            pick(rng, ["It was founded in {y}.", "Its charter dates from {y}.",
                       "Settlers founded it in {y}."], y=t["founded"]),
            pick(rng, ["The town sits on the banks of {v}.", "{V} flows through its centre.",
                       "Its mills were built along {v}."], v=t["river"], V=cap(t["river"])),
            pick(rng, ["Every autumn it hosts {f}.", "{F} draws visitors each year.",
                       "It is best known for {f}."], f=t["festival"], F=cap(t["festival"])),
            pick(rng, ["The current mayor is {m}.", "{m} serves as mayor.",
                       "The town council is led by mayor {m}."], m=t["mayor"]),
        ])
    for c in companies:
        add(c["name"], [
            pick(rng, ["{c} was founded by {f} in {y}.", "{f} established {c} in {y}.",
                       "In {y}, {f} started {c}."], c=c["name"], f=c["founder"], y=c["founded"]),
            pick(rng, ["The company is headquartered in {h}.", "Its head office is in {h}.",
                       "Its main workshop stands in {h}."], h=c["hq"]),
            pick(rng, ["It is best known for its {p}.", "It makes {p}.",
                       "Its main products are {p}."], p=c["product"]),
            pick(rng, ["It employs {e} people.", "Its workforce numbers {e}.",
                       "{e} people work there."], e=c["employees"]),
        ])
    for inv in inventions:
        add(cap(inv["name"]), [
            pick(rng, ["{I} was invented by {p} in {y}.", "{p} invented {i} in {y}.",
                       "In {y}, {p} built the first {k}."],
                 I=cap(inv["name"]), i=inv["name"], p=inv["inventor"], y=inv["year"],
                 k=inv["name"][4:]),
            pick(rng, ["It is used for {u}.", "It was designed for {u}."], u=inv["purpose"]),
            pick(rng, ["It is made of {m}.", "Its body is cast in {m}.",
                       "Each one is built from {m}."], m=inv["material"]),
            pick(rng, ["It is manufactured by {c}.", "{c} produces it.",
                       "{c} holds the rights to make it."], c=inv["maker"]),
        ])
    return docs


def questions(rng, people, towns, companies, inventions):
    qs = []

    def q(templates, answer, **kw):
        qs.append((pick(rng, templates, **kw), [str(answer)]))

    for p in people:
        n = p["name"]
        q(["In what year was {n} born?", "When was {n} born?"], p["born"], n=n)
        q(["In which town was {n} born?", "What is the home town of {n}?"], p["hometown"], n=n)
        q(["What is the profession of {n}?", "What did {n} work as?"], p["profession"], n=n)
        q(["Which company employed {n}?", "Where did {n} work?"], p["employer"], n=n)
        q(["Which instrument did {n} play?", "What instrument does {n} play?"], p["instrument"], n=n)
        q(["Who was the mentor of {n}?", "Under whom did {n} study?"], p["mentor"], n=n)
    for t in towns:
        n = t["name"]
        q(["In which region is {n}?", "Where is the town of {n}?"], t["region"].removeprefix("the "), n=n)
        q(["In what year was {n} founded?", "When was {n} founded?"], t["founded"], n=n)
        q(["Which river flows through {n}?", "On which river does {n} lie?"],
          t["river"].removeprefix("the "), n=n)
        q(["Which festival is {n} known for?", "What festival does {n} host?"],
          t["festival"].removeprefix("the "), n=n)
        q(["Who is the mayor of {n}?"], t["mayor"], n=n)
    for c in companies:
        n = c["name"]
        q(["Who founded {n}?", "Who was the founder of {n}?"], c["founder"], n=n)
        q(["In what year was {n} founded?", "When was {n} established?"], c["founded"], n=n)
        q(["Where is {n} headquartered?", "In which town is {n} based?"], c["hq"], n=n)
        q(["What does {n} make?", "What is {n} known for making?"], c["product"], n=n)
        q(["How many people does {n} employ?"], c["employees"], n=n)
    for inv in inventions:
        n = inv["name"]
        q(["Who invented {n}?", "Who is credited with inventing {n}?"], inv["inventor"], n=n)
        q(["In what year was {n} invented?", "When was {n} invented?"], inv["year"], n=n)
        q(["Which company manufactures {n}?", "Who makes {n}?"], inv["maker"], n=n)
        q(["What material is {n} made of?", "What is {n} made from?"], inv["material"], n=n)
    return qs


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "datasets", "synthetic"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    world = build_world(rng)
    docs = corpus(rng, *world)
    qa = questions(rng, *world)
    assert len(qa) >= N_TRAIN + N_DEV, len(qa)
    # Each fact is asked once, in one split only: dev facts are never seen in training.
    rng.shuffle(qa)
    rows = [{"id": "q%04d" % i, "question": text, "answers": answers}
            for i, (text, answers) in enumerate(qa[:N_TRAIN + N_DEV])]
    os.makedirs(args.out, exist_ok=True)
    write_jsonl(os.path.join(args.out, "corpus.jsonl"), docs)
    write_jsonl(os.path.join(args.out, "train.jsonl"), rows[:N_TRAIN])
    write_jsonl(os.path.join(args.out, "dev.jsonl"), rows[N_TRAIN:])
    entities = sum(len(w) for w in world)
    print("entities=%d documents=%d facts=%d train=%d dev=%d" %
          (entities, len(docs), len(qa), N_TRAIN, N_DEV))


if __name__ == "__main__":
    main()
