"""lavaan model syntax for two-level models, parsed into a list of statements.

``parse(model)`` reads the subset of lavaan's model syntax that two-level random-intercept
SEMs use and returns one :class:`Statement` per parameter the user wrote::

    level: 1
        fw =~ y1 + y2 + y3          # loadings; the first one becomes a fixed 1 later
        fw ~ x1 + x2 + x3           # regressions
    level: 2
        fb =~ y1 + a*y2 + a*y3      # equal labels: one parameter
        y1 ~~ 0*y1                  # a fixed residual variance
        fb ~ 1                      # a free latent mean

What is read, following lavaan (0.7, its default "open" parser):

* block headers ``level: 1`` and ``level: 2``; lavaan takes any label after the colon,
  so ``level: within`` and ``level: between`` work too (here: 1/within, 2/between,
  case-insensitive). Each level needs its own model, and the within level comes first,
  because lavaan treats the first level block it meets as the within level whatever its
  label. A level header may appear again later; its statements join that level.
* operators ``=~`` (is measured by), ``~`` (is regressed on), ``~~`` (covaries with) and
  ``~ 1`` (intercept, returned with ``op="~1"`` and ``rhs=""``; ``y ~ 0`` is the
  intercept fixed at zero). Several names on either side expand to all pairs:
  ``y7 + y8 ~ x1 + x2`` gives four regressions.
* modifiers before a right-hand name, joined by ``*``: a number fixes the parameter
  (``0*y1``, ``-0.5*x``, ``1e-3*x``); ``NA`` frees a parameter that is fixed by default
  (``NA*y1`` frees a marker loading); a name or a quoted string is a label (equal labels,
  anywhere in the model and at either level, mean one parameter); ``start(0.5)``,
  ``fixed(1)``, ``label("a")`` and ``equal("a")`` as in lavaan; ``0.5?y2`` is
  ``start(0.5)*y2``. Modifiers chain: ``a*start(1)*y2`` and ``start(1)*a*y2`` are the
  same. Writing the same right-hand name twice in one level (``4*x3 + lam*x3``, even in
  separate formulas) adds modifiers to one parameter; a modifier kind given twice keeps
  the last, with a warning, as lavaan does. A covariance written again the other way
  round (``y1 ~~ y2`` and ``y2 ~~ y1``) is an error (lavaan 0.6 stops; 0.7 keeps the first
  and drops the second with its modifiers).
* comments from ``#`` or ``!`` to the end of the line; statements end at a newline or a
  ``;``. A formula continues on the next line when the line ends with an operator, ``+``
  or ``*``, or when the next line starts with one (lavaan's rule).

Errors are :class:`ModelSyntaxError` (a ``ValueError``) with the line number in the
message (``"line 3: ..."``) and in ``.line``. lavaan features that are not part of a
two-level random-intercept model (other operators, ``group:`` blocks, ``lower()``,
``upper()``, ``efa()``, ``rv()``, ``c(...)`` vectors of modifiers) are errors that say so,
rather than being silently ignored.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace

from ..errors import ModelSyntaxError

__all__ = ["ModelSyntaxError", "Modifiers", "Statement", "parse", "OPERATORS"]

#: the operators a Statement can carry
OPERATORS = ("=~", "~", "~~", "~1")

# lavaan operators that this package does not fit, with what they are for
_UNSUPPORTED_OPS = {
    "<~": "composites",
    "~*~": "scaling factors",
    "|": "thresholds of ordered variables",
    "|~": "instruments",
    "%": "group weights",
    "==": "equality constraints (use equal labels instead)",
    "<": "inequality constraints",
    ">": "inequality constraints",
    ":=": "defined parameters",
    ":~": "data-defined parameters",
}
# tokens after which (or before which) a newline does not end a formula
_CONTINUES = {"+", "*", "-", "=~", "<~", "~*~", "~~", "~", "|~", "|", "%"}
# R reserved words: lavaan rejects them as variable names
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "in",
             "TRUE", "FALSE", "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_",
             "NA_character_", "NA_complex_"}
_LEVELS = {"1": 1, "within": 1, "2": 2, "between": 2}


@dataclass(frozen=True)
class Modifiers:
    """What the user wrote before a right-hand name.

    ``fixed``: the value the parameter is fixed at (``0*y1``), else None.
    ``free``: True for ``NA*y1`` (free a parameter that a default would fix).
    ``start``: a starting value (``start(0.5)*y2``), else None.
    ``label``: the parameter label (``a*y2``), else None; equal labels, one parameter.
    """

    fixed: float | None = None
    free: bool = False
    start: float | None = None
    label: str | None = None

    def __post_init__(self):
        if self.free and self.fixed is not None:
            raise ValueError("a parameter cannot be both fixed and NA (free)")

    @property
    def empty(self) -> bool:
        return self == Modifiers()


@dataclass(frozen=True)
class Statement:
    """One parameter written in the syntax: ``lhs op rhs`` at ``level`` (1 or 2).

    ``op`` is one of ``"=~"``, ``"~"``, ``"~~"``, ``"~1"`` (then ``rhs == ""``); ``line``
    is the line of the formula that first named it.
    """

    lhs: str
    op: str
    rhs: str
    modifiers: Modifiers = field(default_factory=Modifiers)
    level: int = 1
    line: int = 0

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise ValueError(f"op must be one of {OPERATORS}, not {self.op!r}")
        if self.level not in (1, 2):
            raise ValueError(f"level must be 1 or 2, not {self.level!r}")
        if (self.op == "~1") != (self.rhs == ""):
            raise ValueError("an intercept (op '~1') has rhs '' and no other statement does")

    def __str__(self) -> str:
        m = self.modifiers
        parts = []
        if m.free:
            parts.append("NA")
        if m.fixed is not None:
            parts.append(f"{m.fixed:g}")
        if m.start is not None:
            parts.append(f"start({m.start:g})")
        if m.label is not None:
            parts.append(m.label)
        rhs = "1" if self.op == "~1" else self.rhs
        op = "~" if self.op == "~1" else self.op
        return f"{self.lhs} {op} {''.join(p + '*' for p in parts)}{rhs}"


# --------------------------------------------------------------------------- tokens

@dataclass(frozen=True)
class _Token:
    kind: str  # name, number, string, op, sym, newline
    text: str
    line: int


_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SCANNER = re.compile(
    r"(?P<space>[ \t\r\f\v]+)"
    r"|(?P<newline>[\n;])"
    r"|(?P<comment>[#!][^\n]*)"
    r'|(?P<string>"[^"\n]*")'
    r'|(?P<badstring>"[^"\n]*)'
    r"|(?P<badop><-|->|=>|=(?![~=]))"
    r"|(?P<op>~\*~|=~|<~|~~|\|~|==|:=|:~|~|<|>|:|\||%)"
    rf"|(?P<signed>[-+]{_NUMBER})"
    rf"|(?P<number>{_NUMBER})"
    r"|(?P<name>[A-Za-z_.][A-Za-z0-9_.]*)"
    r"|(?P<sym>[-+*?(),])"
)


def _tokenize(model: str) -> list[_Token]:
    text = model.replace("\u02dc", "~")  # the 'small tilde' some keyboards produce
    tokens: list[_Token] = []
    line, pos = 1, 0
    while pos < len(text):
        m = _SCANNER.match(text, pos)
        if m is None:
            raise ModelSyntaxError(f"unexpected character {text[pos]!r}", line)
        kind, value = m.lastgroup, m.group()
        pos = m.end()
        if kind == "signed":
            # a sign belongs to the number only where a term starts (after an operator,
            # '*', '(' or ','); elsewhere it is a '+' between terms
            prev = tokens[-1] if tokens else None
            if prev is None or prev.kind in ("op", "newline") or prev.text in ("*", "?", "(", ",", "+"):
                tokens.append(_Token("number", value, line))
                continue
            kind, value = "sym", value[0]
            pos = m.start() + 1
        if kind in ("space", "comment"):
            continue
        if kind == "newline":
            tokens.append(_Token("newline", value, line))
            if value == "\n":
                line += 1
            continue
        if kind == "badstring":
            raise ModelSyntaxError(f"unterminated quoted string {value}", line)
        if kind == "badop":
            hint = " (did you mean '=~'?)" if value == "=" else ""
            raise ModelSyntaxError(
                f"unknown operator {value!r}{hint}; the operators are =~ (is measured by), "
                "~ (is regressed on), ~~ (covaries with) and ~ 1 (intercept)", line)
        if kind == "sym" and value == "-":
            raise ModelSyntaxError("unexpected '-': a minus sign only goes in front of a number", line)
        if kind == "string":
            value = value[1:-1]
        tokens.append(_Token(kind, value, line))
    return tokens


def _formulas(tokens: list[_Token]) -> list[list[_Token]]:
    """Group tokens into formulas: a newline ends one unless an operator, '+' or '*'
    ends the line or starts the next one (lavaan's rule; blank lines do not matter)."""
    lines: list[list[_Token]] = [[]]
    for tok in tokens:
        if tok.kind == "newline":
            if lines[-1]:
                lines.append([])
        else:
            lines[-1].append(tok)

    def header(chunk: list[_Token]) -> bool:
        return any(t.kind == "op" and t.text == ":" for t in chunk)

    out: list[list[_Token]] = []
    for chunk in lines:
        if not chunk:
            continue
        # block headers stand alone: joining them would only blur the error message
        if out and not header(out[-1]) and not header(chunk) \
                and (out[-1][-1].text in _CONTINUES or chunk[0].text in _CONTINUES) \
                and not (out[-1][-1].kind == "string" or chunk[0].kind == "string"):
            out[-1].extend(chunk)
        else:
            out.append(list(chunk))
    return out


def _source(tokens: list[_Token]) -> str:
    """The tokens as text, for error messages: 'y1 + 2*y2 ~ x', 'start(a)'."""
    out = ""
    tight = {"*", "?", "(", ")", ","}
    for i, t in enumerate(tokens):
        text = f'"{t.text}"' if t.kind == "string" else t.text
        glued = i == 0 or (t.kind == "sym" and t.text in tight and t.text != "(") or \
            (tokens[i - 1].kind == "sym" and tokens[i - 1].text in tight - {")"}) or \
            (t.text == "(" and tokens[i - 1].kind == "name")
        out += ("" if glued else " ") + text
    return out


def _split(tokens: list[_Token], seps: tuple[str, ...]) -> list[tuple[str | None, list[_Token]]]:
    """Split at separator symbols outside parentheses: [(separator before, part), ...]."""
    parts: list[tuple[str | None, list[_Token]]] = [(None, [])]
    depth = 0
    for tok in tokens:
        if tok.kind == "sym" and tok.text == "(":
            depth += 1
        elif tok.kind == "sym" and tok.text == ")":
            depth -= 1
        if depth == 0 and tok.kind == "sym" and tok.text in seps:
            parts.append((tok.text, []))
        else:
            parts[-1][1].append(tok)
    return parts


def _check_name(tok: _Token, what: str) -> str:
    name = tok.text
    if tok.kind != "name" or name in _RESERVED or re.match(r"\.\d", name) or name.startswith("_"):
        raise ModelSyntaxError(f"{what} {name!r} is not a valid variable name", tok.line)
    return name


# --------------------------------------------------------------------------- modifiers

def _number(tok: _Token) -> float:
    return float(tok.text)


def _one_modifier(part: list[_Token], line: int) -> tuple[str, object]:
    """One modifier -> (kind, value); kind is 'fixed', 'start' or 'label'."""
    text = _source(part)
    if not part:
        raise ModelSyntaxError("empty modifier before '*'", line)
    if len(part) == 1:
        tok = part[0]
        if tok.kind == "number":
            return "fixed", _number(tok)
        if tok.kind == "name" and tok.text == "NA":
            return "fixed", math.nan
        if tok.kind == "name":
            if tok.text in _RESERVED:
                raise ModelSyntaxError(f"modifier {tok.text!r} is a reserved word, not a label", line)
            return "label", tok.text
        if tok.kind == "string":
            if not tok.text:
                raise ModelSyntaxError('an empty label "" is not allowed', line)
            return "label", tok.text
    if len(part) >= 3 and part[0].kind == "name" and part[1].text == "(" and part[-1].text == ")":
        func, args = part[0].text, part[2:-1]
        if func in ("lower", "upper", "prior", "efa", "rv"):
            raise ModelSyntaxError(f"the modifier {func}() is not supported by mlmiss", line)
        if func == "c":
            raise ModelSyntaxError(
                f"c(...) gives one modifier per group; mlmiss fits single-group models: {text}", line)
        if func in ("start", "fixed", "label", "equal"):
            if len(args) != 1:
                raise ModelSyntaxError(f"{func}() takes exactly one value: {text}", line)
            arg = args[0]
            if func in ("start", "fixed"):
                if arg.kind == "number":
                    return func, _number(arg)
                if func == "fixed" and arg.kind == "name" and arg.text == "NA":
                    return "fixed", math.nan
                raise ModelSyntaxError(f"{func}() needs a number: {text}", line)
            if arg.kind in ("name", "string") and arg.text and arg.text != "NA":
                return "label", arg.text
            raise ModelSyntaxError(f"{func}() needs a label (a name or a quoted string): {text}", line)
    raise ModelSyntaxError(
        f"malformed modifier {text!r}: expected a number, NA, a label, start(number), "
        "fixed(number), label(name) or equal(name)", line)


def _merge(old: Modifiers, kind: str, value, line: int, what: str) -> Modifiers:
    """Add one modifier; a kind given twice keeps the last one (with a warning, as lavaan)."""
    if kind == "fixed":
        if old.fixed is not None or old.free:
            warnings.warn(f"line {line}: the fixed value (or NA) of {what} is given more than "
                          "once; the last one is used", stacklevel=4)
        if math.isnan(value):
            return replace(old, fixed=None, free=True)
        return replace(old, fixed=float(value), free=False)
    if getattr(old, kind) is not None:
        warnings.warn(f"line {line}: the {kind} of {what} is given more than once; the last "
                      "one is used", stacklevel=4)
    return replace(old, **{kind: float(value) if kind == "start" else value})


# --------------------------------------------------------------------------- formulas

def _level_header(tokens: list[_Token], line: int) -> int:
    first = tokens[0]
    ident = first.text.lower() if first.kind == "name" else ""
    colon = next(i for i, t in enumerate(tokens) if t.kind == "op" and t.text == ":")
    if ident == "level" and colon != 1:
        raise ModelSyntaxError(
            f"'{_source(tokens)}' is not a level header: the colon comes right after the word "
            "level, as in 'level: 1'", line)
    if colon == 0:
        raise ModelSyntaxError("a block header needs a name before the colon, as in 'level: 1'", line)
    if colon != 1 or first.kind != "name":
        raise ModelSyntaxError(f"invalid block header '{_source(tokens)}'; write 'level: 1' or 'level: 2'", line)
    if ident in ("group", "block", "class"):
        raise ModelSyntaxError(f"'{first.text}:' blocks are not supported: mlmiss fits single-group "
                               "two-level models (level: 1 and level: 2 blocks)", line)
    if ident != "level":
        raise ModelSyntaxError(f"unknown block identifier {first.text!r}; two-level models use "
                               "'level: 1' and 'level: 2'", line)
    if len(tokens) != 3 or tokens[2].kind not in ("number", "name", "string"):
        raise ModelSyntaxError(f"'{_source(tokens)}': a level header is 'level:' followed by the level, "
                               "as in 'level: 1'", line)
    label = tokens[2].text.lower()
    if label not in _LEVELS:
        raise ModelSyntaxError(
            f"unknown level {tokens[2].text!r}: use 'level: 1' (or within) and 'level: 2' (or "
            "between); mlmiss fits two-level models", line)
    return _LEVELS[label]


def _relation(tokens: list[_Token], level: int, line: int) -> list[Statement]:
    ops = [i for i, t in enumerate(tokens) if t.kind == "op"]
    k = ops[0]
    op = tokens[k].text
    if op in _UNSUPPORTED_OPS:
        raise ModelSyntaxError(f"the operator {op!r} ({_UNSUPPORTED_OPS[op]}) is not supported "
                               f"by mlmiss: '{_source(tokens)}'", line)
    if len(ops) > 1:
        raise ModelSyntaxError(f"more than one operator in one formula: '{_source(tokens)}' "
                               "(put each formula on its own line or separate them with ';')", line)
    lhs_tokens, rhs_tokens = tokens[:k], tokens[k + 1:]
    if not lhs_tokens:
        raise ModelSyntaxError(f"missing left-hand side of {op!r}: '{_source(tokens)}'", line)
    if not rhs_tokens:
        raise ModelSyntaxError(f"missing right-hand side of {op!r}: '{_source(tokens)}'", line)

    lhs_names = []
    for sep, part in _split(lhs_tokens, ("+",)):
        if not part:
            raise ModelSyntaxError(f"empty term on the left of {op!r}: '{_source(tokens)}'", line)
        if len(part) != 1:
            raise ModelSyntaxError(f"modifiers go on the right-hand side of {op!r}, not on the "
                                   f"left: '{_source(tokens)}'", line)
        lhs_names.append(_check_name(part[0], "left-hand side"))

    terms = []  # (rhs name, op, Modifiers)
    for sep, term in _split(rhs_tokens, ("+",)):
        if not term:
            if sep is None:  # a leading '+' (copied from multi-line R input) is dropped
                continue
            raise ModelSyntaxError(f"empty term on the right of {op!r}: '{_source(tokens)}'", line)
        pieces = _split(term, ("*", "?"))
        last_sep, last = pieces[-1]
        if len(last) != 1:
            raise ModelSyntaxError(f"cannot read the term '{_source(term)}': a term is a name, "
                                   "optionally preceded by modifiers joined with '*'", line)
        mods = Modifiers()
        collected = []
        for i, (_, part) in enumerate(pieces[:-1]):
            kind, value = _one_modifier(part, line)
            if pieces[i + 1][0] == "?":  # '0.5?x' means start(0.5)*x
                if kind != "fixed" or math.isnan(value):
                    raise ModelSyntaxError(f"'?' needs a number before it: '{_source(term)}'", line)
                kind = "start"
            collected.append((kind, value))
        target = last[0]
        t_op, rhs = op, None
        if target.kind == "number":
            if op != "~":
                raise ModelSyntaxError(f"the right-hand side of {op!r} must be variable names, "
                                       f"not {target.text!r}", line)
            if float(target.text) == 1.0:
                t_op, rhs = "~1", ""
            elif float(target.text) == 0.0 and not collected:
                t_op, rhs = "~1", ""
                collected.append(("fixed", 0.0))
            else:
                raise ModelSyntaxError(f"'{_source(term)}': an intercept is written '~ 1' (or "
                                       "'~ 0' for an intercept fixed at zero)", line)
        else:
            rhs = _check_name(target, "right-hand side")
        what = f"'{lhs_names[0] if len(lhs_names) == 1 else '...'} {op} {_source(term)}'"
        for kind, value in collected:
            mods = _merge(mods, kind, value, line, what)
        terms.append((rhs, t_op, mods))

    out = []
    for lhs in lhs_names:
        for rhs, t_op, mods in terms:
            if t_op == "=~" and lhs == rhs:
                raise ModelSyntaxError(f"latent variable {lhs!r} cannot be measured by itself", line)
            if t_op == "~" and lhs == rhs:
                raise ModelSyntaxError(f"a variable cannot be regressed on itself ({lhs} ~ {rhs})", line)
            out.append(Statement(lhs, t_op, rhs, mods, level, line))
    return out


def _saturated_hint(statements: list[Statement]) -> str:
    """The tutorial's advice: a saturated level 2 over the level-1 endogenous variables
    (every observed variable except those that only appear as predictors)."""
    latent = {s.lhs for s in statements if s.op == "=~"}
    names: list[str] = []
    for s in statements:
        for v in (s.lhs, s.rhs):
            if v and v not in latent and v not in names:
                names.append(v)
    only_predictor = {v for v in names
                      if all(s.op == "~" and s.rhs == v for s in statements if v in (s.lhs, s.rhs))}
    names = [v for v in names if v not in only_predictor]
    if not names:
        return ""
    rows = [f"  {v} ~~ " + " + ".join(names[i:]) for i, v in enumerate(names)]
    return ("; if you have no model in mind for level 2, make it saturated (all variances and "
            "covariances of the endogenous variables free):\nlevel: 2\n" + "\n".join(rows))


def parse(model: str) -> list[Statement]:
    """Parse lavaan model syntax with ``level: 1`` and ``level: 2`` blocks.

    Returns one :class:`Statement` per distinct ``(lhs, op, rhs, level)``, in the order
    first written, with all modifiers written for it merged. Raises
    :class:`ModelSyntaxError` (with the line number) for anything it cannot read.
    """
    if not isinstance(model, str):
        raise TypeError(f"model must be a string of lavaan syntax, not {type(model).__name__}")
    tokens = _tokenize(model)
    if not any(t.kind != "newline" for t in tokens):
        raise ModelSyntaxError("the model syntax is empty", 1)
    last_line = [t for t in tokens if t.kind != "newline"][-1].line
    formulas = _formulas(tokens)
    if not any(t.kind == "op" and t.text == ":" for f in formulas for t in f):
        raise ModelSyntaxError(
            "the model has no 'level: 1' and 'level: 2' blocks, but a two-level model needs a "
            "model for each level: the within model after 'level: 1' and the between model "
            "after 'level: 2' (lavaan: 'you must specify a model for each level')",
            formulas[0][0].line)

    statements: list[Statement] = []
    index: dict[tuple[str, str, str, int], int] = {}
    level: int | None = None
    seen_levels: dict[int, int] = {}   # level -> line of its first header
    block_sizes: list[list] = []       # [level, header line, number of formulas]
    for formula in formulas:
        line = formula[0].line
        ops = [t for t in formula if t.kind == "op"]
        if not ops:
            if formula[0].kind == "name" and formula[0].text.lower() == "level":
                raise ModelSyntaxError(f"'{_source(formula)}' is not a level header: write "
                                       "'level: 1' (a colon right after the word level)", line)
            raise ModelSyntaxError(f"no operator in '{_source(formula)}' (=~, ~, ~~ or ~ 1 expected)", line)
        if ops[0].text == ":":
            level = _level_header(formula, line)
            if level == 2 and 1 not in seen_levels:
                raise ModelSyntaxError(
                    "the level: 2 block comes before the level: 1 block; lavaan treats the first "
                    "level block as the within level, so write level: 1 first", line)
            seen_levels.setdefault(level, line)
            block_sizes.append([level, line, 0])
            continue
        if level is None:
            raise ModelSyntaxError(
                f"'{_source(formula)}' comes before any level header; a two-level model is "
                "written in a 'level: 1' block and a 'level: 2' block", line)
        block_sizes[-1][2] += 1
        for st in _relation(formula, level, line):
            key = (st.lhs, st.op, st.rhs, st.level)
            mirror = (st.rhs, st.op, st.lhs, st.level)
            if st.op == "~~" and st.lhs != st.rhs and mirror in index:
                first = statements[index[mirror]]
                raise ModelSyntaxError(
                    f"'{st.lhs} ~~ {st.rhs}' is the covariance '{first.lhs} ~~ {first.rhs}' of line "
                    f"{first.line} again; write each covariance once, with all its modifiers", line)
            if key in index:
                # the same parameter again: its modifiers are added to the first one
                old = statements[index[key]]
                mods = old.modifiers
                m = st.modifiers
                what = f"'{st}'"
                if m.free or m.fixed is not None:
                    mods = _merge(mods, "fixed", math.nan if m.free else m.fixed, line, what)
                if m.start is not None:
                    mods = _merge(mods, "start", m.start, line, what)
                if m.label is not None:
                    mods = _merge(mods, "label", m.label, line, what)
                statements[index[key]] = replace(old, modifiers=mods)
            else:
                index[key] = len(statements)
                statements.append(st)

    for lev, header_line, n in block_sizes:
        if n == 0:
            raise ModelSyntaxError(
                f"the level: {lev} block is empty; each level needs a model (lavaan: 'you must "
                "specify a model for each level')", header_line)
    if set(seen_levels) != {1, 2}:
        missing = 2 if 1 in seen_levels else 1
        msg = (f"the model has no level: {missing} block; a two-level model needs a model for "
               "each level (lavaan: 'you must specify a model for each level')")
        if missing == 2:
            msg += _saturated_hint([s for s in statements if s.level == 1])
        raise ModelSyntaxError(msg, last_line)
    return statements
