"""The offline writer for models of the scenes world (vocabulary "scenes"): films with a cast.

Like the shapes planner (`planner.py`) it is deterministic and writes only what the model can
draw, but the scenes world has several objects, events and relations, so a premise's characters
become a cast and each beat's verbs choose the kind of shot:

1. the premise's characters are cast as scene objects: "a red ball" is a red circle (colour and
   shape words with their synonyms); "the ball" or "it" is a character met before; characters
   the premise implies but does not describe ("its friends", "a stranger", "a rock" it hides
   behind) get a look derived from a hash of the premise, one no other character has;
2. each beat is read for event words, in order, and every event becomes a composition of the
   scenes grammar (`EVENT_WORDS` lists them): crossing alone is `single`; chases, follows and
   flees are `motion` (both moving the same way); meets, finds and joins put the friends on
   screen with the hero (`attributes`); hides behind / passes in front of, hits and pushes are
   `interactions`; grows, shrinks and turns a colour are `dynamic`; bounces, spins and jumps are
   `actions`; counting is `numeracy`; above, below, left of, right of are `spatial`. A beat
   without any is its hero moving on;
3. every choice the premise leaves open (a direction, a wall, a size, a count, a new colour, a
   derived look) is taken from the hash, keeps each category's constraints (two different
   objects, different colours for interactions, spins only for squares and triangles) and avoids
   held-out compositions; what the premise names explicitly is kept;
4. shots are spread over the beats and a beat's shots over its events; a repeated event varies
   what was derived (a crossing turns clockwise, as in the shapes planner).

Every prompt is a canonical caption of its composition and is checked to parse back to it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from nanosora.shapes.captions import SHAPE_WORDS, parse_prompt
from nanosora.shapes.grammar import (
    RELATIONS,
    SIZES,
    SPIN_SHAPES,
    WALLS,
    Composition,
    Thing,
    canonical_caption,
    parse,
)
from nanosora.shapes.scenes import is_held_out
from nanosora.shapes.world import COLORS, DIRECTIONS, SHAPES
from nanosora.story.planner import CAMERA, allocate, digest, split_beats
from nanosora.story.schema import Scene, Script, Shot, ShotList, StoryError
from nanosora.story.translate import require_english

SCENES = "scenes"

# Event kinds, in the order that wins where two phrases overlap ("moves behind" is a pass, not a
# crossing), with the phrases that name them.
EVENT_WORDS: dict[str, str] = {
    "recolour": r"(?:chang(?:es|e|ed|ing) (?:its |his |her |their )?colou?rs?(?: to (?P<to>\w+))?"
    r"|(?:turn(?:s|ed|ing)?|becom(?:es|e|ing)|became|glow(?:s|ed|ing)?) (?:into )?(?P<new>\w+))",
    "grows": r"(?:grow(?:s|ing)?|grew|gets? bigger|swell(?:s|ed|ing)?|expand(?:s|ed|ing)?)",
    "shrinks": r"(?:shr[iau]nk(?:s|ing)?|gets? smaller|dwindl(?:es|e|ed|ing)|contract(?:s|ed|ing)?)",
    "behind": r"(?:hid(?:es|e|ing)?|pass(?:es|ed|ing)?|go(?:es|ing)?|went|slip(?:s|ped|ping)?|"
    r"duck(?:s|ed|ing)?|mov(?:es|e|ed|ing)|creep(?:s|ing)?|crept|sneak(?:s|ed|ing)?) behind",
    "front": r"(?:pass(?:es|ed|ing)?|go(?:es|ing)?|went|mov(?:es|e|ed|ing)|walk(?:s|ed|ing)?|"
    r"step(?:s|ped|ping)?|run(?:s|ning)?|ran|roll(?:s|ed|ing)?) in front of",
    "spatial": r"(?:above|on top of|below|under(?:neath)?|beneath|(?:(?:to|on) the )?(?:left|right) of)",
    "push": r"(?:hit(?:s|ting)?|push(?:es|ed|ing)?|bump(?:s|ed|ing)?(?: into)?|strik(?:es|e|ing)|"
    r"struck|shov(?:es|e|ed|ing)|knock(?:s|ed|ing)?|ram(?:s|med|ming)?|collid(?:es|e|ed|ing) with|"
    r"nudg(?:es|e|ed|ing))",
    "bounce": r"(?:bounc(?:es|e|ed|ing)|rebound(?:s|ed|ing)?|ricochet(?:s|ed|ing)?)",
    "spin": r"(?:spin(?:s|ning)?|spun|twirl(?:s|ed|ing)?|rotat(?:es|e|ed|ing)|whirl(?:s|ed|ing)?|"
    r"pirouett(?:es|e|ed|ing)|turn(?:s|ed|ing)? (?:a)?round)",
    "jump": r"(?:jump(?:s|ed|ing)?|hop(?:s|ped|ping)?|leap(?:s|t|ed|ing)?)",
    "count": r"(?:count(?:s|ed|ing)?)",
    "chase": r"(?:chas(?:es|e|ed|ing)|follow(?:s|ed|ing)?|pursu(?:es|e|ed|ing)|hunt(?:s|ed|ing)?)",
    "flee": r"(?:fle(?:es|e|eing)|fled|escap(?:es|e|ed|ing)|r[au]n(?:s|ning)? away)",
    "meet": r"(?:meet(?:s|ing)?|met|find(?:s|ing)?|found|join(?:s|ed|ing)?|greet(?:s|ed|ing)?|"
    r"reunit(?:es|e|ed|ing)(?: with)?|visit(?:s|ed|ing)?|discover(?:s|ed|ing)?)",
    "cross": r"(?:cross(?:es|ed|ing)?|travel(?:s|led|ling|ed|ing)?|journey(?:s|ed|ing)?|"
    r"wander(?:s|ed|ing)?|roam(?:s|ed|ing)?|mov(?:es|e|ed|ing)|go(?:es|ing)?|went|"
    r"roll(?:s|ed|ing)?|drift(?:s|ed|ing)?|glid(?:es|e|ed|ing)|slid(?:es|e|ing)?|"
    r"fall(?:s|ing)?|fell|ris(?:es|e|ing)|rose|fl(?:ies|y|ew|ying)|r[au]n(?:s|ning)?|"
    r"walk(?:s|ed|ing)?|sail(?:s|ed|ing)?|head(?:s|ed|ing)?|drop(?:s|ped|ping)?|"
    r"sink(?:s|ing)?|sank|climb(?:s|ed|ing)?|rac(?:es|e|ed|ing)|return(?:s|ed|ing)?|turn(?:s|ed|ing)?)",
}
_EVENT_RE = {k: re.compile(rf"\b{v}\b") for k, v in EVENT_WORDS.items()}
# Events whose second object the premise names after the verb (or implies).
_PARTNERED = ("behind", "front", "spatial", "push", "chase", "flee", "meet")

# Shape nouns: the shapes vocabulary's words and a few more free-text ones; plurals by suffix.
_SHAPE_NOUNS = {w: s for s in SHAPES for w in SHAPE_WORDS[s]} | {
    "disk": "circle", "dot": "circle", "orb": "circle", "sphere": "circle",
    "cube": "square", "tile": "square", "pyramid": "triangle", "wedge": "triangle",
}  # fmt: skip
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "wee": "small",
               "big": "big", "large": "big", "huge": "big", "giant": "big", "enormous": "big"}  # fmt: skip
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "several": 3, "many": 4}  # fmt: skip
# Characters a premise implies without describing them. Groups (plural) have two members on
# screen by default, so the hero and a group fit the three objects an attributes shot allows.
_IMPLIED = (
    "friend", "companion", "pal", "buddy", "stranger", "rival", "enemy", "foe", "partner",
    "sibling", "brother", "sister", "mother", "father", "parent", "child", "kid", "neighbour",
    "neighbor", "guardian", "visitor", "hunter", "predator", "monster", "ghost", "twin", "mate",
    "family", "crowd", "gang", "crew", "team", "flock", "herd",
)  # fmt: skip
_COLLECTIVE = ("family", "crowd", "gang", "crew", "team", "flock", "herd")
_PRONOUNS = {"it": False, "him": False, "them": True}  # object pronoun -> a group? ("her" is
# more often "her friends" than an object)
# Wall nouns (the side they name, if any) and the words that pick a side.
_WALLS = {"wall": "", "walls": "", "edge": "", "side": "", "ceiling": "top", "roof": "top",
          "sky": "top", "floor": "bottom", "ground": "bottom"}  # fmt: skip
_WALL_SIDES = {"left": "left", "right": "right", "top": "top", "upper": "top", "bottom": "bottom",
               "lower": "bottom"}  # fmt: skip
# Words between a verb and its object, and words that end an object phrase.
_PREPOSITIONS = set(
    "into onto with from at toward towards past across through off of on upon around after in "
    "over".split()
)
_SKIP = _PREPOSITIONS | set(
    "the a an its his her their our my your this that these those some another again back away "
    "all each both".split()
)
_STOP = set(
    "and then but while to until as because so where when who which that for by before after "
    "or is are was were be".split()
)
_TIMES = {"times", "days", "years", "hours", "minutes", "seconds", "nights", "weeks"}
_NOT_NOUNS = set(DIRECTIONS) | {"upward", "downward", "forward", "home", "alone", "together",
                                "slowly", "quickly", "there", "here", "everywhere", "it", "them"}  # fmt: skip
_TOKEN = re.compile(r"[a-z]+|\d+")
_EMPTY = re.compile("")


@dataclass
class Character:
    """One member of the cast: how the premise calls it and how it looks on screen."""

    name: str  # "red ball", "friend", "friend 2"
    color: str | None = None  # None until derived
    shape: str | None = None
    size: str = ""  # "small" or "big" when the premise says so
    named_color: bool = False  # the premise names the colour (else it is derived)
    named_shape: bool = False

    @property
    def thing(self) -> Thing:
        return Thing(self.color or "", self.shape or "")


@dataclass(frozen=True)
class _Mention:
    """A character named in a beat: the character index(es) and where the words are."""

    start: int
    end: int
    chars: tuple[int, ...]  # a group mention names all its members
    crowd: int | None = None  # "three red balls": a number in front of a plural


@dataclass
class _Event:
    """One event of a beat: its kind, words and the characters in it."""

    kind: str
    match: re.Match[str]
    segment: str  # the beat's text from the verb to the next event's verb
    subject: int
    partners: tuple[int, ...] = ()
    count: int | None = None  # numeracy: the number the premise names
    counted: int = -1  # numeracy: the character counted


@dataclass(frozen=True)
class Planned:
    """One event as drawn: its compositions (the first is the event's; the others are what a
    repeated shot of it may vary to) and the character in focus."""

    options: tuple[Composition, ...]
    focus: int


def _words(text: str) -> list[re.Match[str]]:
    return list(_TOKEN.finditer(text))


def _singulars(word: str) -> list[str]:
    """The word and what it is as a singular ("boxes" -> "box", "buddies" -> "buddy")."""
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


def _shape_noun(word: str) -> tuple[str, bool] | None:
    """(shape, plural) for a shape noun such as "ball", "boxes"; None for other words."""
    for i, w in enumerate(_singulars(word)):
        if w in _SHAPE_NOUNS:
            return _SHAPE_NOUNS[w], i > 0
    return None


def _color_word(word: str) -> str | None:
    """The palette colour a single word names ("crimson" -> "red"), if any."""
    return parse_prompt(word)[0] if word.isalpha() else None


def _implied_noun(word: str) -> tuple[str, bool] | None:
    """(name, group) for a noun of an implied character ("friends" -> ("friend", True))."""
    if word in ("children", "others"):
        return word.removesuffix("s").removesuffix("ren"), True
    for i, w in enumerate(_singulars(word)):
        if w in _IMPLIED:
            return w, i > 0 or w in _COLLECTIVE
    return None


def _number(word: str) -> int | None:
    return int(word) if word.isdigit() else _NUMBERS.get(word)


def _joined(text: str, a: re.Match[str], b: re.Match[str]) -> bool:
    """Whether only spaces or hyphens separate word `a` from word `b` (no comma)."""
    return re.fullmatch(r"[\s-]*", text[a.end() : b.start()]) is not None


def _object_noun(phrase: str) -> tuple[list[str], str | None]:
    """(the words skipped before it, the noun) of the phrase a verb takes: "behind a big old
    rock and ..." -> "rock"; "into the dark" -> (["into", "the"], "dark"); None if no noun."""
    lead: list[str] = []
    run: list[str] = []
    for m in _words(phrase):
        w = m.group()
        if not run and (w in _SKIP or _number(w)):
            lead.append(w)
            continue
        if w in _STOP or len(run) == 3:
            break
        run.append(w)
    noun = run[-1] if run else ""
    ok = noun and noun not in _NOT_NOUNS and not noun.endswith("ly") and len(noun) > 2
    return lead, noun if ok else None


def _phrase_end(text: str, start: int, end: int) -> int:
    """Where the phrase after a verb ends: at a comma or a word such as "and", "so", "to"."""
    for m in re.finditer(r"[,;]|[a-z]+", text[start:end]):
        if m.group() in _STOP or m.group() in ",;":
            return start + m.start()
    return end


def _numbers(text: str, taken: list[re.Match[str]]) -> list[re.Match[str]]:
    """Counting named by a number before a plural noun ("three stars", "two red boxes") that
    no other event covers and that follows no "counts" (that is one count)."""
    words, out = _words(text), []
    for i, w in enumerate(words):
        n = _number(w.group())
        if not n or n < 2:
            continue
        for j in range(i + 1, min(i + 3, len(words))):
            noun = words[j].group()
            if not _joined(text, words[j - 1], words[j]) or _implied_noun(noun) or noun in _TIMES:
                break
            if noun.endswith("s") and len(noun) > 3:
                m = re.compile(re.escape(text[w.start() : words[j].end()])).search(text, w.start())
                assert m is not None
                counted = any(0 <= m.start() - t.end() <= 12 for t in taken
                              if _EVENT_RE["count"].fullmatch(t.group()))  # fmt: skip
                if not counted and all(m.end() <= t.start() or m.start() >= t.end() for t in taken):
                    out.append(m)
                break
    return out


def constraint_problem(comp: Composition) -> str:
    """Why the scenes world cannot draw `comp` (docs/scenes.md, the categories), or ""."""
    things, words = comp.things, comp.words
    match comp.category:
        case "attributes":
            if not 2 <= len(things) <= 3 or len(set(things)) < len(things):
                return "an attributes shot shows 2-3 different objects"
        case "numeracy":
            if not 1 <= len(things) <= 4:
                return "a count is 1-4"
        case "spatial" | "motion":
            if things[0] == things[1]:
                return f"a {comp.category} shot needs two different objects"
        case "interactions":
            if things[0].color == things[1].color:
                return "the two objects of an interaction differ in colour"
        case "dynamic":
            if words[0] == "turns" and words[1] == things[0].color:
                return "a colour change needs a new colour"
        case "actions":
            if words[0] == "spin" and things[0].shape not in SPIN_SHAPES:
                return f"only a {' or a '.join(SPIN_SHAPES)} can be seen to spin"
    return ""


def _rotated(options: Sequence[str], salt: str, *tag: object) -> list[str]:
    """`options` starting at a place the hash chooses (the same for the same salt and tag)."""
    k = digest(salt, *tag) % len(options)
    return [*options[k:], *options[:k]]


@dataclass
class _Reader:
    """Reads a premise's beats into a cast and events, then composes each event."""

    salt: str
    cast: list[Character] = field(default_factory=list)
    groups: dict[str, list[int]] = field(default_factory=dict)
    recent: list[int] = field(default_factory=list)  # characters, most recently named last

    # ---- the cast ----------------------------------------------------------------------------

    def character(self, name: str, color: str | None = None, shape: str | None = None,
                  size: str = "") -> int:  # fmt: skip
        """The character with this name (and named look), created on first mention."""
        for i, c in enumerate(self.cast):
            if c.name == name:
                c.size = c.size or size
                return i
        self.cast.append(Character(name, color, shape, size, color is not None, shape is not None))
        return len(self.cast) - 1

    def group(self, name: str, members: int) -> tuple[int, ...]:
        """The implied group `name` ("friend") with `members` members, at most 2 on screen."""
        ids = self.groups.setdefault(name, [])
        want = max(1, min(members, 2))
        while len(ids) < want:
            ids.append(self.character(f"{name} {len(ids) + 1}" if ids else name))
        return tuple(ids[:want])

    def _by_shape(self, shape: str) -> int | None:
        """The character of this shape named most recently (else first), for "the ball"."""
        for i in [*reversed(self.recent), *range(len(self.cast))]:
            if self.cast[i].shape == shape and self.cast[i].named_shape:
                return i
        return None

    def mentions(self, text: str) -> list[_Mention]:
        """The characters a (lower-case) beat names, in order, created where new."""
        words, out, i = _words(text), [], 0
        while i < len(words):
            w, end = words[i].group(), i
            color, noun = _color_word(w), _shape_noun(w)
            # a colour, then within two words a shape noun: "red ball", "red little ball"
            if color is not None:
                noun = None
                for j in range(i + 1, min(i + 3, len(words))):
                    if (
                        not _joined(text, words[j - 1], words[j])
                        or words[j].group() in _STOP | _SKIP
                    ):
                        break
                    if noun := _shape_noun(words[j].group()):
                        end = j
                        break
            lead = [x.group() for x in words[max(0, i - 2) : i]]
            count = next((_number(x) for x in lead if _number(x)), None)
            if noun is not None:
                shape, plural = noun
                size = next((_SIZE_WORDS[x.group()] for x in words[max(0, i - 2) : end] if x.group() in _SIZE_WORDS), "")  # fmt: skip
                found = None if color else self._by_shape(shape)
                ch = found if found is not None else self.character(f"{color} {shape}" if color else shape, color, shape, size)  # fmt: skip
                crowd = count if plural and count and count > 1 else None
                out.append(_Mention(words[i].start(), words[end].end(), (ch,), crowd))
            elif (implied := _implied_noun(w)) is not None:
                name, plural = implied
                members = (count or 2) if plural else 1
                out.append(_Mention(words[i].start(), words[i].end(), self.group(name, members)))
            i = end + 1
        return out

    def derive_looks(self) -> None:
        """Give every character the premise does not fully describe a look from the hash: one no
        other character has, in a colour no other character has where one is left."""
        for i, c in enumerate(self.cast):
            if c.color and c.shape:
                continue
            others = [o for k, o in enumerate(self.cast) if k != i and o.color and o.shape]
            colors = [c.color] if c.color else _rotated(list(COLORS), self.salt, "colour", c.name)
            shapes = [c.shape] if c.shape else _rotated(SHAPES, self.salt, "shape", c.name)
            looks = [Thing(col, s) for col in colors for s in shapes]
            free = [t for t in looks if t not in {o.thing for o in others}] or looks
            used = {o.color for o in others}
            pick = next((t for t in free if t.color not in used), free[0])
            c.color, c.shape = pick.color, pick.shape

    # ---- the events --------------------------------------------------------------------------

    def events(self, text: str, focus: int) -> tuple[list[_Event], int]:
        """The events of one beat in order, with their characters; and the focus after it."""
        text = text.lower()
        found: list[tuple[str, re.Match[str]]] = []
        for kind, pattern in _EVENT_RE.items():  # earlier kinds win overlaps
            for m in pattern.finditer(text):
                if kind == "recolour" and m["new"] and not _color_word(m["new"]):
                    continue  # "turns left" is a crossing, "turns green" a colour change
                if all(m.end() <= s.start() or m.start() >= s.end() for _, s in found):
                    found.append((kind, m))
        found += [("count", m) for m in _numbers(text, [m for _, m in found])]
        found.sort(key=lambda km: km[1].start())
        mentions = self.mentions(text)
        if not found:  # a beat that names no event: its hero moves on
            found = [("cross", _EMPTY.match(text))]  # type: ignore[list-item]
        events: list[_Event] = []
        used: set[int] = set()  # where the mentions that are an earlier event's object start
        for k, (kind, m) in enumerate(found):
            end = found[k + 1][1].start() if k + 1 < len(found) else len(text)
            before = m.start() if m.group() else len(text)
            subject = next((x.chars[0] for x in reversed(mentions) if x.end <= before
                            and x.start not in used and x.crowd is None), None)  # fmt: skip
            if subject is None:
                subject = focus if focus >= 0 else self.character("hero")
            ev = _Event(kind, m, text[m.start() : end], subject)
            stop = _phrase_end(text, m.end(), end)  # the object is named before "and", a comma
            after = [x for x in mentions if m.end() <= x.start < stop and subject not in x.chars]
            if kind in _PARTNERED:
                ev.partners = self._partners(ev, after)
                # the object's own words: no later event's subject
                used.update(x.start for x in after[:1] if x.chars[0] in ev.partners)
            if ev.kind == "count":  # "three red boxes": the number's phrase names the counted
                self._counting(ev, [x for x in mentions if m.start() <= x.start < end])
            for ch in (subject, *ev.partners):
                self.recent = [c for c in self.recent if c != ch] + [ch]
            focus = subject
            events.append(ev)
        return events, focus

    def _other(self, subject: int) -> int:
        """Whoever was named last besides `subject`, else a stranger."""
        other = next((c for c in reversed(self.recent) if c != subject), None)
        return other if other is not None else self.group("stranger", 1)[0]

    def _partners(self, ev: _Event, after: list[_Mention]) -> tuple[int, ...]:
        """The second object(s) of an event: named after the verb, a pronoun, a noun (an implied
        character), else whoever was named last; fleeing nothing is crossing alone."""
        rest = ev.segment[len(ev.match.group()) :]
        lead, noun = _object_noun(rest)
        first = next((w.group() for w in _words(rest) if w.group() not in _SKIP), "")
        if first in _PRONOUNS:
            them = [tuple(g) for g in self.groups.values()] if _PRONOUNS[first] else []
            chars = them[-1] if them else (self._other(ev.subject),)
        elif after:
            chars = after[0].chars
        elif noun is not None and noun in _WALLS and ev.kind in ("push", "flee", "chase"):
            ev.kind = "bounce"  # "bumps into the wall"
            return ()
        elif noun is not None and (
            ev.kind != "flee" or "from" in lead or not set(lead) & _PREPOSITIONS
        ):
            implied = _implied_noun(noun)
            chars = self.group(implied[0], 2 if implied[1] else 1) if implied else (self.character(noun),)  # fmt: skip
        elif ev.kind == "flee":
            ev.kind = "cross"
            return ()
        elif ev.kind == "meet" and self.groups:
            chars = tuple(next(iter(self.groups.values())))[:2]
        else:
            chars = (self._other(ev.subject),)
        return tuple(c for c in chars if c != ev.subject) or (self._other(ev.subject),)

    def _counting(self, ev: _Event, after: list[_Mention]) -> None:
        """How many of what are counted: the number and noun after the verb (or the number's
        own phrase, "three stars"); a noun that is no shape becomes an implied character."""
        words = [w.group() for w in _words(ev.segment)]
        ev.count = next((n for w in words if (n := _number(w))), None)
        named = next((x for x in after if len(x.chars) == 1), None)
        if named is not None:
            ev.counted = named.chars[0]
            return
        nouns = [w for w in words[1:] if w.endswith("s") and w not in _STOP and len(w) > 3]
        noun = next((w for w in nouns if not _implied_noun(w) and not _number(w)), "stars")
        ev.counted = self.character(_singulars(noun)[-1])

    # ---- compositions ------------------------------------------------------------------------

    def look(self, ch: int, current: dict[int, Thing]) -> Thing:
        """The character's look now (a colour change sticks)."""
        return current.get(ch, self.cast[ch].thing)

    def _looks(self, ch: int, current: dict[int, Thing]) -> list[Thing]:
        """The character's look first; for a derived one, then the looks nobody has."""
        c, look = self.cast[ch], self.look(ch, current)
        if c.named_color and c.named_shape or ch in current:
            return [look]
        taken = {self.look(k, current) for k in range(len(self.cast)) if k != ch}
        colors = [look.color] if c.named_color else _rotated(list(COLORS), self.salt, "alt", c.name)
        shapes = [look.shape] if c.named_shape else _rotated(SHAPES, self.salt, "alt", c.name)
        alts = [Thing(col, s) for col in colors for s in shapes]
        return [look, *(t for t in alts if t != look and t not in taken)]

    def compose(self, ev: _Event, index: int, current: dict[int, Thing]) -> Planned:
        """The event's compositions (see `_choose`); `index` numbers the premise's events."""
        said = parse_prompt(re.sub(r"\b(?:left|right) of\b", "", ev.segment))[2]
        dirs = [said] if said else _rotated(DIRECTIONS, self.salt, "direction", index)
        a, kind, verb = ev.subject, ev.kind, ev.match.group()
        b = ev.partners[0] if ev.partners else -1
        if (
            kind in ("behind", "front", "push")
            and self.look(a, current).color == self.look(b, current).color
        ):
            kind = "chase"  # the world tells interacting objects apart by colour
        if kind == "spin" and self.look(a, current).shape not in SPIN_SHAPES:
            kind = "jump"  # a turning circle looks still: it jumps instead

        def plan(chars: list[int], build: Callable[..., Composition], *options: list) -> Planned:
            return Planned(self._choose(chars, list(options), build, current), a)

        match kind:
            case "cross":
                return plan([a], lambda x, d: Composition("single", (x,), (d,)), dirs)
            case "chase" | "flee":  # the one fleeing and its pursuer run the same way
                return plan([a, b], lambda x, y, d: Composition("motion", (x, y), (d, d)), dirs)
            case "behind" | "front":
                return plan([a, b], lambda x, y: Composition("interactions", (x, y), (kind,)))
            case "push":
                return plan([a, b], lambda x, y, d: Composition("interactions", (x, y), (f"push_{d}",)), dirs)  # fmt: skip
            case "spatial":
                rel = next(
                    (r for r in RELATIONS if r in verb), "above" if "top" in verb else "below"
                )
                return plan([a, b], lambda x, y: Composition("spatial", (x, y), (rel,)))
            case "meet":
                chars = [a, *ev.partners][:3]
                sizes = [[self.cast[c].size] if self.cast[c].size else _rotated(SIZES, self.salt, "size", self.cast[c].name) for c in chars]  # fmt: skip

                def together(*args: Thing | str) -> Composition:
                    looks, zs = args[: len(chars)], args[len(chars) :]
                    return Composition("attributes", tuple(t._replace(size=z) for t, z in zip(looks, zs)))  # type: ignore[union-attr]  # fmt: skip

                return plan(chars, together, *sizes)
            case "grows" | "shrinks":
                return plan([a], lambda x: Composition("dynamic", (x,), (kind,)))
            case "recolour":
                new = _color_word(ev.match["new"] or ev.match["to"] or "")
                now = self.look(a, current)
                free = [c for c in COLORS if c != now.color]
                used = {self.look(k, current).color for k in range(len(self.cast))}
                free = _rotated([c for c in free if c not in used] or free, self.salt, "recolour", index)  # fmt: skip
                p = plan([a], lambda x, c: Composition("dynamic", (x,), ("turns", c)), [new] if new else free)  # fmt: skip
                if p.options:  # from now on the character has its new colour
                    current[a] = p.options[0].things[0]._replace(color=p.options[0].words[1])
                return p
            case "bounce":
                named = [
                    _WALL_SIDES.get(w) or _WALLS.get(w) for w in re.findall(r"[a-z]+", ev.segment)
                ]
                walls = [w for w in named if w][:1] or _rotated(WALLS, self.salt, "wall", index)
                return plan([a], lambda x, w: Composition("actions", (x,), (f"bounce_{w}",)), walls)
            case "spin" | "jump":
                return plan([a], lambda x: Composition("actions", (x,), (kind,)))
            case "count":
                counts = [min(ev.count, 4)] if ev.count else _rotated([2, 3, 4], self.salt, "count", index)  # type: ignore[list-item]  # fmt: skip
                return plan([ev.counted], lambda x, n: Composition("numeracy", (x,) * n), counts)
        raise ValueError(f"unknown event {kind!r}")

    def _choose(self, chars: list[int], options: list[list], build: Callable[..., Composition],
                current: dict[int, Thing]) -> tuple[Composition, ...]:  # fmt: skip
        """Compositions for an event, the one to draw first.

        Candidates vary what the premise left open (each option list), then the looks of derived
        characters. Held-out and undrawable ones are skipped. With the cast's own looks, every
        allowed candidate is returned (a repeated shot may vary to them); if none is allowed
        with those looks, the first allowed with another derived look; if nothing is allowed,
        the first drawable candidate: the premise named it.
        """
        looks = [self._looks(c, current) for c in chars]
        own = tuple(x[0] for x in looks)
        allowed: list[Composition] = []
        first: Composition | None = None
        for combo in itertools.product(*looks, *options):
            comp = build(*combo)
            if constraint_problem(comp):
                continue
            first = first or comp
            if combo[: len(chars)] != own:
                if allowed:
                    break  # every option was tried with the cast's own looks
                if not is_held_out(comp):
                    return (comp,)
            elif not is_held_out(comp):
                allowed.append(comp)
        return tuple(allowed) or ((first,) if first else ())


def read_premise(texts: list[str], salt: str) -> tuple[list[Character], list[list[Planned]]]:
    """The cast and, per beat, its events as compositions (module docstring, steps 1-3)."""
    reader = _Reader(salt)
    for text in texts:  # everyone the premise names, so the hero is the first one named
        reader.mentions(text.lower())
    named = [i for i, c in enumerate(reader.cast) if c.named_color or c.named_shape]
    focus = named[0] if named else -1
    beats_events = []
    for text in texts:
        evs, focus = reader.events(text, focus)
        beats_events.append(evs)
    reader.derive_looks()
    current: dict[int, Thing] = {}
    planned, index = [], 0
    for evs in beats_events:
        row = []
        for ev in evs:
            p = reader.compose(ev, index, current)
            if not p.options:  # nothing drawable: the focus moves on instead
                ev = _Event("cross", ev.match, ev.segment, subject=ev.subject)
                p = reader.compose(ev, index, current)
            row.append(p)
            index += 1
        planned.append(row)
    return reader.cast, planned


def _turn(comp: Composition, turns: int) -> Composition:
    """A crossing or chase turned clockwise `turns` times (held-out turns skipped)."""
    clockwise = {"left": "up", "up": "right", "right": "down", "down": "left"}
    for _ in range(turns):
        for _ in range(4):
            comp = comp._replace(words=tuple(clockwise[w] for w in comp.words))
            if not is_held_out(comp):
                break
    return comp


def _variant(p: Planned, repeat: int) -> Composition:
    """The composition of the `repeat`-th shot of one event (0: the event's own)."""
    comp = p.options[0]
    if repeat and comp.category in ("single", "motion"):
        return _turn(comp, repeat)
    return p.options[repeat % len(p.options)]


def caption(comp: Composition) -> str:
    """The shot prompt: the composition's canonical caption, checked to parse back to it."""
    text = canonical_caption(comp)
    if parse(text)[0] != comp:
        raise AssertionError(f"{text!r} does not parse back to {comp}")
    return text


def _look_name(cast: list[Character], p: Planned) -> str:
    return f"{cast[p.focus].color} {cast[p.focus].shape}"


def write_script(premise: str) -> Script:
    """Premise -> script: one scene per beat, headed by the character in focus."""
    premise = (premise or "").strip()
    if not premise:
        raise StoryError(
            "the premise is empty: describe the story, e.g. 'a red ball meets its friends'"
        )
    require_english(premise, "the premise")
    texts = (split_beats(premise) or [premise])[:50]
    cast, planned = read_premise(texts, premise)
    scenes = [
        Scene(id=f"scene{i + 1}", heading=f"SCENE {i + 1} - THE {_look_name(cast, row[0]).upper()}",
              summary=text[:2000])
        for i, (text, row) in enumerate(zip(texts, planned, strict=True))
    ]  # fmt: skip
    words = premise.rstrip(".!?").split()
    title = (
        " ".join(words) if 0 < len(words) <= 6 else f"The {_look_name(cast, planned[0][0]).title()}"
    )
    return Script(title=title[:120], logline=premise[:500], scenes=scenes)


def plan_shots(script: Script, num_shots: int = 6, duration: float = 2.0) -> ShotList:
    """Script -> `num_shots` shots: beats spread over the shots, a beat's shots over its events."""
    if not 1 <= num_shots <= 200:
        raise StoryError(f"the number of shots must be 1-200, got {num_shots}")
    texts = [s.summary for s in script.scenes]
    _, planned = read_premise(texts, script.logline)
    owner = allocate(len(texts), num_shots)
    shots = []
    for i, b in enumerate(owner):
        mine = [k for k, o in enumerate(owner) if o == b]
        j = mine.index(i)
        which = allocate(len(planned[b]), len(mine))
        event = which[j]
        comp = _variant(planned[b][event], which[:j].count(event))
        prompt = caption(comp)
        role = "Opening shot" if i == 0 else "Final shot" if i == num_shots - 1 else f"Shot {i + 1}"
        shots.append(Shot(
            id=f"s{i + 1:02d}", scene=script.scenes[b].id,
            description=f"{role}. {prompt[0].upper()}{prompt[1:]}.", prompt=prompt,
            duration=duration, camera=CAMERA, subtitle=texts[b][:300] if j == 0 else None,
            transition="fade" if j == 0 else "cut",
        ))  # fmt: skip
    return ShotList(title=script.title, shots=shots)


def check_prompts(prompts: Sequence[str]) -> Iterator[tuple[int, str]]:
    """(index, reason) for every prompt the scenes world cannot draw: one the grammar does not
    parse, or a composition outside a category's constraints."""
    for i, prompt in enumerate(prompts):
        try:
            comp = parse(prompt)[0]
        except ValueError as e:
            yield i, str(e)
            continue
        if problem := constraint_problem(comp):
            yield i, f"{prompt!r}: {problem}"


def rules() -> str:
    """What a chat writer is told about the scenes world: one canonical example per kind."""
    red, blue = Thing("red", "circle"), Thing("blue", "square")
    examples = [
        Composition("single", (red,), ("left",)),
        Composition("attributes", (red._replace(size="small"), blue._replace(size="big"))),
        Composition("numeracy", (Thing("yellow", "triangle"),) * 3),
        Composition("spatial", (red, blue), ("left",)),
        Composition("motion", (red, blue), ("right", "right")),
        Composition("dynamic", (red,), ("turns", "green")),
        Composition("dynamic", (red,), ("grows",)),
        Composition("actions", (red,), ("bounce_left",)),
        Composition("actions", (blue,), ("spin",)),
        Composition("actions", (red,), ("jump",)),
        Composition("interactions", (red, blue), ("push_right",)),
        Composition("interactions", (red, blue), ("behind",)),
        Composition("interactions", (red, blue), ("front",)),
    ]
    return (
        "The video model draws the scenes world: up to four coloured objects on a black "
        f"background. Colours: {', '.join(COLORS)}. Shapes: {', '.join(SHAPES)}. Every shot's "
        "'prompt' must follow one of these patterns exactly, changing only colours, shapes, "
        "directions (left, right, up, down), sizes (small, big), counts (one to four), relations "
        "(to the left of, to the right of, above, below) and walls (left, right, top, bottom): "
        + "; ".join(f"'{canonical_caption(c)}'" for c in examples)
        + ". Two objects of a shot differ; objects that interact differ in colour; only squares "
        "and triangles spin; a group shot shows 2-3 objects. Tell the story through which "
        "objects appear and what they do."
    )
