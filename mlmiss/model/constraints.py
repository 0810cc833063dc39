"""Parameter constraints and defined parameters in lavaan's syntax.

lavaan reads four more operators between expressions of parameter labels:
``lhs == rhs`` (equality), ``lhs < rhs`` and ``lhs > rhs`` (inequalities) and
``name := expression`` (a defined parameter, reported with its delta-method standard
error). They may stand anywhere in the syntax, inside or after the level blocks, one per
line. The expressions use labels, earlier defined names, numbers, ``+ - * / ^``,
parentheses and ``exp``, ``log``, ``sqrt``.

Here such lines are taken out of the model text before the level blocks are parsed
(:func:`split_constraints`, the line numbers kept), each expression is checked and
compiled once (:class:`Expression`), and :func:`check_constraints` ties the names to the
parameter table's labels.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelSyntaxError

#: the constraint operators, in the order a line is searched for them
CONSTRAINT_OPS = (":=", "==", "<", ">")
#: functions an expression may call (smooth, so derivatives by complex steps are exact)
FUNCTIONS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt}

_OPERATOR = re.compile(r":=|==|<(?!~)|>")
_ALLOWED_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_ALLOWED_UNARY = (ast.UAdd, ast.USub)


@dataclass(frozen=True)
class Expression:
    """A checked arithmetic expression of names and numbers, compiled once."""

    text: str
    names: tuple
    code: object = field(repr=False, compare=False)

    def __call__(self, env: dict):
        return eval(self.code, {"__builtins__": {}}, {**FUNCTIONS, **env})


@dataclass(frozen=True)
class Constraint:
    """``lhs op rhs`` as written on ``line``; for ``:=`` lhs is the defined name."""

    lhs: str
    op: str
    rhs: str
    line: int
    left: Expression | None = field(default=None, repr=False, compare=False)
    right: Expression | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.lhs} {self.op} {self.rhs}"


def _strip_comment(line: str) -> str:
    for mark in ("#", "!"):
        at = line.find(mark)
        if at >= 0:
            line = line[:at]
    return line


def expression(text: str, line: int) -> Expression:
    """Parse and check an expression: names, numbers, + - * / ^, parentheses and the
    :data:`FUNCTIONS`. A ModelSyntaxError names what is not allowed."""
    source = text.strip()
    if not source:
        raise ModelSyntaxError("an empty side of a constraint", line)
    try:
        tree = ast.parse(source.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ModelSyntaxError(f"cannot read the expression '{source}'", line) from None
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expression):
            continue
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _ALLOWED_BINARY):
                raise ModelSyntaxError(f"the operator in '{source}' is not one of + - * / ^", line)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _ALLOWED_UNARY):
                raise ModelSyntaxError(f"'{source}': only + and - may stand before a term", line)
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                    and len(node.args) == 1 and not node.keywords):
                raise ModelSyntaxError(
                    f"'{source}': the functions an expression may use are "
                    f"{', '.join(FUNCTIONS)} (one argument each)", line)
        elif isinstance(node, ast.Name):
            if node.id not in FUNCTIONS:
                names.append(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise ModelSyntaxError(f"'{source}' holds {node.value!r}, not a number", line)
        elif not isinstance(node, (ast.Load, ast.operator, ast.unaryop)):
            raise ModelSyntaxError(f"cannot use '{source}' as an expression of labels and "
                                   "numbers", line)
    code = compile(tree, "<constraint>", "eval")
    return Expression(source, tuple(dict.fromkeys(names)), code)


def split_constraints(model: str) -> tuple[str, list[Constraint]]:
    """(the model text without its constraint lines, the constraints in order). A
    constraint line is blanked, so the level blocks keep their line numbers."""
    kept, found = [], []
    for number, raw in enumerate(model.split("\n"), start=1):
        text = _strip_comment(raw)
        match = _OPERATOR.search(text)
        if match is None:
            kept.append(raw)
            continue
        kept.append("")
        op = match.group()
        if len(_OPERATOR.findall(text)) > 1:
            raise ModelSyntaxError(f"more than one constraint operator in '{text.strip()}'", number)
        lhs, rhs = text[:match.start()].strip(), text[match.end():].strip()
        if op == ":=":
            if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", lhs):
                raise ModelSyntaxError(f"'{lhs}' cannot be defined: the left of ':=' is a new "
                                       "name", number)
            found.append(Constraint(lhs, op, rhs, number, None, expression(rhs, number)))
        else:
            found.append(Constraint(lhs, op, rhs, number, expression(lhs, number),
                                    expression(rhs, number)))
    return "\n".join(kept), found


def check_constraints(constraints, labels) -> None:
    """Every name of a constraint must be a parameter label or a name defined on an
    earlier line; a defined name must be new. ModelSyntaxError names the line."""
    known = set(labels)
    defined: set[str] = set()
    for c in constraints:
        for side in (c.left, c.right):
            if side is None:
                continue
            unknown = [n for n in side.names if n not in known and n not in defined]
            if unknown:
                raise ModelSyntaxError(
                    f"'{c}': {', '.join(repr(n) for n in unknown)} is not a parameter label (label "
                    "a parameter in the model, as in 'fw =~ y1 + a*y2') nor a name defined "
                    "by ':=' above", c.line)
        if c.op == ":=":
            if c.lhs in known or c.lhs in defined:
                raise ModelSyntaxError(f"'{c.lhs}' is already a label or defined: ':=' needs a "
                                       "new name", c.line)
            defined.add(c.lhs)
