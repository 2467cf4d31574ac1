"""``cai constitution lint``: warnings a constitution author can act on, each with principle id and line.

The checks are heuristics about what makes principles work in critique->revise and judging:

* ``similar-principles`` - two principles with near-identical wording waste sampling draws and make
  judge ensembles double-count one concern.
* ``critique-without-target`` - a critique request that never says what to look for ("Critique the
  response.") yields generic critiques, so revisions drift.
* ``revision-without-rewrite`` - a revision request that does not ask for a rewrite gets commentary
  back instead of a new response, which then becomes SFT data.
* ``judge-not-comparative`` - the pairwise judge asks "which of A and B"; a yes/no or absolute
  question ("Is the response safe?") leaves the letter to chance and position bias.
* ``no-judge`` - a principle without a ``judge`` question is judged by a question derived from its
  critique request ("Which response has fewer of the problems it describes?"), which is vaguer
  than one written for the principle; often the key was lost to a YAML slip (next check).
* ``key-in-block-text`` - a line inside a block scalar (``revision: >-`` or ``|``) that looks like a
  key of the enclosing mapping (``judge: ...`` indented two spaces too far). YAML reads it as one
  more line of the text: the key silently disappears and the text gains a line. The file still
  validates when the lost key is optional, which is why only lint can catch it.
* ``no-few-shot`` - a principle no few-shot example illustrates gets no worked example in its
  critique/revision calls (weak models copy the examples' shape).
* ``long-principle`` - very long requests are followed worse by small models and cost tokens on
  every call.

Warnings point at the YAML line of the offending field, following ``extends`` into the parent file
when the principle comes from there.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from cai_engine.constitution import Constitution, load_constitution
from cai_engine.constitution.loader import schema_keys
from cai_engine.constitution.yaml_nodes import swallowed_keys
from cai_engine.errors import CaiError
from cai_engine.text_measures import normalize
from cai_engine.workbench.textsim import similarity
from cai_engine.yamlfile import YamlDoc, read_yaml

#: Findings that point at a gap rather than a defect: printed as ``note[...]`` and not failing the
#: lint unless ``--strict``. Every few-shot example is shown whatever principles a round samples,
#: so a principle without its own example still gets worked examples of the format.
NOTE_CODES = frozenset({"no-few-shot"})

CHECKS: dict[str, str] = {
    "similar-principles": "principles with near-identical wording",
    "critique-without-target": "critique requests that never say what to look for",
    "revision-without-rewrite": "revision requests that do not ask for a rewrite",
    "judge-not-comparative": "judge questions that do not compare two responses",
    "no-judge": "principles without a judge question",
    "key-in-block-text": "lines inside a block scalar (>- or |) that look like a key of the mapping around it",
    "no-few-shot": "principles that no few-shot example covers",
    "long-principle": "very long critique/revision/judge text",
}

# Words that say nothing about *what* to look for: instructions, the response itself, filler.
_GENERIC = set(
    """a an the this that these those it its of in on at to for from with by as and or but not no any all
    some every each be is are was were been being do does did have has had can could should would will may
    might must please identify point out find list note explain describe discuss critique critic criticise
    criticize review assess evaluate analyse analyze examine check look consider mention tell say write
    specific specifically ways way how where what which whether why who whom whose when response responses
    assistant assistants answer answers reply replies ai model previous last above given your you yours
    any anything everything something problems problem issues issue flaws flaw weaknesses weakness mistakes
    mistake errors error shortcomings things thing wrong bad worse poor improve improved better good well
    could might possible possibly potential potentially ways in which just also very more less most least
    there here than then so such one ones many much""".split()
)
_REWRITE = re.compile(
    r"\b(re-?writ\w*|revis\w*|rephras\w*|redraft\w*|rework\w*|redo\w*|edit\w*|amend\w*|modif\w*|correct\w*|"
    r"fix\w*|replac\w*|remov\w*|delet\w*|chang\w*|adjust\w*|updat\w*|improv\w*|reword\w*|refram\w*|"
    r"restructur\w*|shorten\w*|simplif\w*|condens\w*|(?:write|give|produce|draft)\s+(?:a|an|the)\s+"
    r"(?:new|better|improved|revised|safer|corrected|different))\b",
    re.IGNORECASE,
)
_COMPARATIVE = re.compile(
    r"\b(which|whichever|compare[sd]?|comparing|compared|prefer\w*|choose|pick|select|"
    r"(?:response|answer|option)\s+(?:a|b|1|2)|first or (?:the )?second)\b",
    re.IGNORECASE,
)


class LintSettings(BaseModel):
    """Thresholds of the heuristic checks, and checks to skip."""

    model_config = ConfigDict(extra="forbid")

    similar_threshold: float = Field(0.75, gt=0, le=1, description="Jaccard (char 4-grams) of one field at which two principles are near-identical.")
    similar_combined_threshold: float = Field(0.6, gt=0, le=1, description="Same, for critique+revision together.")
    max_words: int = Field(80, ge=1, description="Longest critique or revision request, in words.")
    max_judge_words: int = Field(40, ge=1, description="Longest judge question, in words.")
    ignore: list[str] = Field(default_factory=list, description="Check names to skip.")


@dataclass(frozen=True)
class LintWarning:
    """One finding: where it is, which principle, what is wrong and what to do."""

    code: str
    principle_id: str  # "" when the finding is not about a principle (then ``subject`` says what)
    path: str
    line: int
    col: int
    message: str
    fix: str
    subject: str = ""  # e.g. "the top level", "few_shot[1]"; default: the principle

    @property
    def is_note(self) -> bool:
        return self.code in NOTE_CODES

    def format(self) -> str:
        level = "note" if self.is_note else "warning"
        about = f"principle {self.principle_id!r}" if self.principle_id else (self.subject or "file")
        return f"{self.path}:{self.line}:{self.col}: {level}[{self.code}] {about}: {self.message}; {self.fix}"

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("code", "principle_id", "subject", "path", "line", "col", "message", "fix")}


Locator = dict[str, tuple[YamlDoc, int]]  # principle id -> (file it is defined in, its index there)


def extends_chain(path: Path) -> list[YamlDoc]:
    """The file and the files it extends, child first (each read once)."""
    from cai_engine.constitution.loader import _resolve_extends  # same resolution as the loader

    chain: list[YamlDoc] = []
    seen: set[Path] = set()
    current: Path | None = path
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        doc = read_yaml(current)
        chain.append(doc)
        target = doc.data.get("extends") if isinstance(doc.data, dict) else None
        current = _resolve_extends(target, doc) if isinstance(target, str) else None
    return chain


def locate_principles(path: Path, chain: list[YamlDoc] | None = None) -> Locator:
    """Which file and list index defines each principle, following ``extends`` (a child's wins)."""
    chain = extends_chain(path) if chain is None else chain
    where: Locator = {}
    for doc in reversed(chain):  # parents first, so children overwrite
        items = doc.data.get("principles") if isinstance(doc.data, dict) else None
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                where[item["id"]] = (doc, index)
    return where


class _Reporter:
    def __init__(self, constitution: Constitution, locator: Locator, settings: LintSettings):
        self.constitution = constitution
        self.locator = locator
        self.settings = settings
        self.warnings: list[LintWarning] = []
        self.fallback = str(constitution.source_path or constitution.name)

    def add(self, code: str, principle_id: str, field: str | None, message: str, fix: str) -> None:
        if code in self.settings.ignore:
            return
        found = self.locator.get(principle_id)
        if found is None:  # e.g. a CAI recipe JSON: no YAML positions
            path, line, col = self.fallback, 1, 1
        else:
            doc, index = found
            loc: tuple[str | int, ...] = ("principles", index) + ((field,) if field else ())
            pos = doc.pos(loc, key=field is not None)
            path, line, col = str(doc.path), pos.line, pos.col
        self.warnings.append(LintWarning(code, principle_id, path, line, col, message, fix))

    def add_at(self, code: str, principle_id: str, subject: str, path: str, line: int, col: int, message: str, fix: str) -> None:
        if code not in self.settings.ignore:
            self.warnings.append(LintWarning(code, principle_id, path, line, col, message, fix, subject))


def _content_words(text: str) -> list[str]:
    return [w for w in normalize(text).split() if w not in _GENERIC and not w.isdigit() and len(w) > 2]


def _check_similar(r: _Reporter) -> None:
    s = r.settings
    for a, b in itertools.combinations(r.constitution.principles, 2):
        scores = {
            "critique": similarity(a.critique, b.critique),
            "revision": similarity(a.revision, b.revision),
        }
        if a.judge and b.judge:
            scores["judge"] = similarity(a.judge, b.judge)
        combined = similarity(f"{a.critique} {a.revision}", f"{b.critique} {b.revision}")
        field, score = max(scores.items(), key=lambda kv: kv[1])
        if score >= s.similar_threshold or combined >= s.similar_combined_threshold:
            what = f"{field} ({score:.0%} similar)" if score >= s.similar_threshold else f"critique+revision ({combined:.0%} similar)"
            r.add(
                "similar-principles", b.id, field if score >= s.similar_threshold else None,
                f"wording is near-identical to principle {a.id!r}: {what}",
                "merge the two, or make each one name a distinct concern",
            )


def _check_principle(r: _Reporter) -> None:
    s = r.settings
    covered = {ex.principle for ex in r.constitution.few_shot}
    for p in r.constitution.principles:
        if not _content_words(p.critique):
            r.add(
                "critique-without-target", p.id, "critique",
                f"the critique request never says what to look for ({_clip(p.critique)!r})",
                "name the problem, e.g. 'Identify any dosing advice beyond the label and quote it'",
            )
        if not _REWRITE.search(p.revision):
            r.add(
                "revision-without-rewrite", p.id, "revision",
                f"the revision request does not ask for a rewrite ({_clip(p.revision)!r})",
                "start it with 'Rewrite the response to ...' so the model returns a new response, not commentary",
            )
        if p.judge is not None and not _COMPARATIVE.search(p.judge):
            r.add(
                "judge-not-comparative", p.id, "judge",
                f"the judge question does not compare two responses ({_clip(p.judge)!r})",
                "ask 'Which response is more/less ...?' so the judge picks A or B",
            )
        if p.judge is None:
            r.add(
                "no-judge", p.id, "id",
                "the principle has no judge question, so pairs are judged by one derived from its critique "
                "request ('Which response has fewer of the problems it describes?')",
                "add `judge: Which response ...?` at the indentation of `critique:`",
            )
        if p.id not in covered and "no-few-shot" not in s.ignore:
            r.add(
                "no-few-shot", p.id, "id",
                "no few-shot example illustrates this principle",
                f"add a few_shot example with `principle: {p.id}` (or --ignore no-few-shot)",
            )
        for field, limit in (("critique", s.max_words), ("revision", s.max_words), ("judge", s.max_judge_words)):
            text = getattr(p, field) or ""
            words = len(text.split())
            if words > limit:
                r.add(
                    "long-principle", p.id, field,
                    f"the {field} text is {words} words (limit {limit})",
                    "shorten it to one concrete instruction; small models follow short requests better",
                )


def _check_block_text(r: _Reporter, chain: list[YamlDoc]) -> None:
    """``key-in-block-text`` in every file of the chain, for the parts of it the constitution uses."""
    for depth, doc in enumerate(chain):
        try:
            text = doc.path.read_text(encoding="utf-8")
        except (OSError, UnicodeError):
            continue
        data = doc.data if isinstance(doc.data, dict) else {}
        for found in swallowed_keys(text, schema_keys):
            loc = found.map_loc
            pid, subject = "", "the top level"
            if len(loc) >= 2 and loc[0] == "principles" and isinstance(loc[1], int):
                item = data["principles"][loc[1]]
                pid = item.get("id") if isinstance(item.get("id"), str) else ""
                if pid and r.locator.get(pid, (None, None))[0] is not doc:
                    continue  # a child file replaces this principle: its text is not used
                subject = f"principles[{loc[1]}]"
            elif loc:
                subject = _describe(loc)
            elif any(found.scalar_key in (d.data or {}) for d in chain[:depth]):
                continue  # a child file sets this top-level text itself
            r.add_at("key-in-block-text", pid, subject, str(doc.path), found.line, found.col,
                     found.describe(), found.hint())


def _describe(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def lint_constitution(constitution: Constitution, settings: LintSettings | None = None) -> list[LintWarning]:
    """All warnings for a loaded constitution, in file order (path, line)."""
    settings = settings or LintSettings()
    unknown = sorted(set(settings.ignore) - set(CHECKS))
    if unknown:
        raise CaiError(f"unknown lint check {unknown[0]!r} in --ignore; use one of: {', '.join(CHECKS)}")
    locator: Locator = {}
    chain: list[YamlDoc] = []
    source = constitution.source_path
    if source is not None and source.suffix.lower() in (".yaml", ".yml"):
        chain = extends_chain(source)
        locator = locate_principles(source, chain)
    reporter = _Reporter(constitution, locator, settings)
    _check_similar(reporter)
    _check_principle(reporter)
    _check_block_text(reporter, chain)
    return sorted(reporter.warnings, key=lambda w: (w.path, w.line, w.col, w.code))


def lint_file(path_or_name: str | Path, settings: LintSettings | None = None) -> list[LintWarning]:
    """Load (validation errors raise :class:`ConfigError`) and lint one constitution."""
    return lint_constitution(load_constitution(path_or_name), settings)


def summarize(warnings: Iterable[LintWarning]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in warnings:
        counts[w.code] = counts.get(w.code, 0) + 1
    return counts


__all__ = [
    "CHECKS", "LintSettings", "LintWarning", "extends_chain", "lint_constitution", "lint_file", "locate_principles",
    "summarize",
]
