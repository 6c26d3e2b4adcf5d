"""Loads Terraform modules with python-hcl2 and answers the questions test_graph.py asks.

What it owns: reading every .tf file of a module into one structure (resources, variables,
locals, outputs, module calls), resolving the simple references the checks need
(`var.x`, `local.x.y`, `module.m.output`, `tostring(...)`, literals) across module calls,
and evaluating variables' validation conditions for given values by translating the small
subset of HCL they use into Python. It never runs Terraform and never touches the network.
Anything outside that subset raises `Unresolvable`, so a check cannot pass by accident.
"""

import ipaddress
import json
import os
import re

import hcl2


class Unresolvable(Exception):
    """An expression outside the subset this module understands."""


def _norm(value):
    """python-hcl2 8 keeps quotes on keys and string literals; strip them where literal."""
    if isinstance(value, dict):
        return {_unquote(k): _norm(v) for k, v in value.items() if k not in ("__is_block__", "__comments__", "__inline_comments__")}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _unquote(key):
    if isinstance(key, str) and len(key) >= 2 and key[0] == '"' and key[-1] == '"':
        return key[1:-1]
    return key


def literal(value):
    """A string literal's text ("\"abc\"" -> "abc"); None when it is an expression."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"' and "${" not in value.replace("$${", ""):
        return json.loads(value).replace("$${", "${").replace("%%{", "%{")
    return None


class Module:
    """Every .tf file of one directory, merged."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.resources = []  # (type, name, body)
        self.data = []
        self.variables = {}
        self.locals = {}
        self.outputs = {}
        self.calls = {}
        self.settings = []  # terraform {} blocks
        self.providers = {}
        files = sorted(f for f in os.listdir(self.path) if f.endswith(".tf"))
        if not files:
            raise FileNotFoundError(f"no .tf files in {self.path}")
        for name in files:
            with open(os.path.join(self.path, name)) as f:
                doc = _norm(hcl2.load(f))
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        self.resources.append((rtype, rname, body))
            for block in doc.get("data", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        self.data.append((rtype, rname, body))
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("module", []):
                self.calls.update(block)
            self.settings.extend(doc.get("terraform", []))
            for block in doc.get("provider", []):
                self.providers.update(block)

    def of_type(self, rtype):
        return [(name, body) for t, name, body in self.resources if t == rtype]

    def resource(self, rtype, name):
        for t, n, body in self.resources:
            if t == rtype and n == name:
                return body
        raise KeyError(f"{rtype}.{name} not in {self.path}")


class Scope:
    """A module and the inputs its caller gave it (expressions in the caller's scope)."""

    def __init__(self, module, inputs=None, parent=None):
        self.module = module
        self.inputs = inputs or {}
        self.parent = parent

    def child(self, call_name):
        call = self.module.calls[call_name]
        source = literal(call["source"])
        child = Module(os.path.join(self.module.path, source))
        return Scope(child, {k: v for k, v in call.items() if k != "source"}, self)

    def var(self, name):
        if name in self.inputs:
            return self.parent.eval(self.inputs[name])
        decl = self.module.variables.get(name)
        if decl is None:
            raise Unresolvable(f"no variable {name} in {self.module.path}")
        if "default" not in decl:
            raise Unresolvable(f"variable {name} has no value and no default")
        return self.eval(decl["default"])

    def eval(self, value):
        """The value of an attribute: literals as they are, references resolved."""
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        if isinstance(value, list):
            return [self.eval(v) for v in value]
        if isinstance(value, dict):
            return {k: self.eval(v) for k, v in value.items()}
        text = literal(value)
        if text is not None:
            return text
        m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
        if not m:
            if value in ("string", "number", "bool"):
                return value
            raise Unresolvable(f"not a literal or a single expression: {value!r}")
        return self._expr(m.group(1).strip())

    def _expr(self, expr):
        m = re.fullmatch(r"tostring\((.*)\)", expr)
        if m:
            return str(self._expr(m.group(1).strip()))
        m = re.fullmatch(r"(var|local|module)\.(\w+)((?:\.\w+)*)", expr)
        if not m:
            raise Unresolvable(f"expression outside the subset: {expr}")
        kind, name, rest = m.group(1), m.group(2), [p for p in m.group(3).split(".") if p]
        if kind == "var":
            value = self.var(name)
        elif kind == "local":
            if name not in self.module.locals:
                raise Unresolvable(f"no local {name}")
            value = self.eval(self.module.locals[name])
        else:
            child = self.child(name)
            out, rest = rest[0], rest[1:]
            value = child.eval(child.module.outputs[out]["value"])
        for attr in rest:
            value = value[attr]
        return value


# --- validation conditions ---------------------------------------------------------------

def _regex(pattern, s):
    m = re.search(pattern, s)
    if m is None:
        raise ValueError("no match")
    return m.group(0)


def _cidrhost(cidr, n):
    return str(ipaddress.ip_network(cidr, strict=False)[n])


def _cidrnetmask(cidr):
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version != 4:
        raise ValueError("IPv4 only")
    return str(net.netmask)


def _can(thunk):
    try:
        thunk()
        return True
    except Exception:  # noqa: BLE001 - can() is true exactly when evaluation succeeds
        return False


FUNCTIONS = {
    "contains": lambda seq, x: x in seq,
    "length": len,
    "alltrue": lambda xs: all(bool(x) for x in xs),
    "anytrue": lambda xs: any(bool(x) for x in xs),
    "can": _can,
    "regex": _regex,
    "cidrhost": _cidrhost,
    "cidrnetmask": _cidrnetmask,
    "startswith": lambda s, p: s.startswith(p),
    "strcontains": lambda s, p: p in s,
    "tonumber": lambda x: float(x) if "." in str(x) else int(x),
    "split": lambda sep, s: s.split(sep),
}


def _closing(text, start):
    """Index of the bracket closing the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    raise Unresolvable(f"unbalanced brackets in {text!r}")


def _top_level(text, token):
    """Index of the first `token` in `text` outside brackets and strings."""
    depth, quoted = 0, False
    for i in range(len(text)):
        c = text[i]
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and c in "([{":
            depth += 1
        elif not quoted and c in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and text.startswith(token, i):
            return i
    raise Unresolvable(f"no {token!r} in {text!r}")


def _for_expressions(expr):
    """[for x in xs : body] -> [body for x in xs] (list for-expressions, innermost last)."""
    m = re.search(r"\[\s*for\s+(\w+)\s+in\s+", expr)
    if not m:
        return expr
    end = _closing(expr, m.start())
    inner = expr[m.end():end]
    colon = _top_level(inner, ":")
    seq, body = inner[:colon].strip(), _for_expressions(inner[colon + 1:].strip())
    return expr[:m.start()] + f"[{body} for {m.group(1)} in {seq}]" + _for_expressions(expr[end + 1:])


def to_python(condition):
    """Translates an HCL condition of the supported subset into a Python expression."""
    m = re.fullmatch(r"\$\{(.*)\}", condition, re.S)
    if not m:
        raise Unresolvable(f"condition is not an expression: {condition!r}")
    expr = m.group(1)
    for name in re.findall(r"\b([a-z_]+)\(", expr):
        if name not in FUNCTIONS:
            raise Unresolvable(f"function {name}() is outside the subset")
    expr = _for_expressions(expr)
    expr = re.sub(r"var\.(\w+)((?:\.\w+)*)",
                  lambda m: f'V["{m.group(1)}"]' + "".join(f'["{p}"]' for p in m.group(2).split(".") if p),
                  expr)
    expr = expr.replace("can(", "can(lambda: ")
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    expr = re.sub(r"\btrue\b", "True", expr)
    expr = re.sub(r"\bfalse\b", "False", expr)
    return expr


def validation_holds(variable_body, values):
    """Whether every validation block of a variable accepts `values` (a dict of var values)."""
    results = []
    for block in variable_body.get("validation", []):
        code = to_python(block["condition"])
        scope = {"__builtins__": {}, **FUNCTIONS, "V": values}
        results.append(bool(eval(code, scope)))  # noqa: S307 - the translated subset only
    if not results:
        raise AssertionError("the variable has no validation block")
    return all(results)
