"""The import rules of ARCHITECTURE.md, checked on the source text (no import needed)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "cancorder")


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield (rel[:-len(".__init__")] if rel.endswith(".__init__") else rel), path


def _imports(module, path):
    """Every cancorder module this file imports (absolute names), at any depth of the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "cancorder" or name.startswith("cancorder.")}


GRAPH = {module: _imports(module, path) for module, path in _modules()}


def _violations(importers, forbidden):
    return sorted((module, target) for module, targets in GRAPH.items()
                  if importers(module) for target in targets if forbidden(target))


def test_fast_imports_nothing_else_of_cancorder():
    assert _violations(lambda m: m.startswith("cancorder._fast"),
                       lambda t: not t.startswith("cancorder._fast")) == []


def test_sources_know_no_server_broadcaster_or_sockets_layer():
    assert _violations(
        lambda m: m.startswith("cancorder.sources"),
        lambda t: t.startswith(("cancorder.server", "cancorder._fast.broadcast",
                                "cancorder.sinks", "cancorder.commands"))) == []


def test_sources_reference_no_server_and_log_through_logging():
    """Beyond imports: no source holds a server or a broadcaster (the old ``attach(server)``),
    and none prints: sources log through ``logging`` (the CLI's one handler formats it)."""
    found = []
    for module, path in _modules():
        if not module.startswith("cancorder.sources"):
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            name = node.id if isinstance(node, ast.Name) else \
                node.attr if isinstance(node, ast.Attribute) else \
                node.name if isinstance(node, ast.FunctionDef) else \
                node.arg if isinstance(node, ast.arg) else None
            if name in ("attach", "server", "broadcaster", "print", "stderr", "stdout"):
                found.append(f"{module}:{node.lineno} {name}")
    assert found == []


def test_the_client_side_does_not_import_the_server():
    assert _violations(lambda m: m in ("cancorder.client", "cancorder.formats",
                                       "cancorder.monitor", "cancorder.dbc")
                       or m.startswith("cancorder.logfiles"),
                       lambda t: t.startswith(("cancorder.server", "cancorder.sinks"))) == []


def test_commands_import_no_other_command():
    def other_command(module):
        return lambda t: t.startswith("cancorder.commands.") and t != module and \
            not t.startswith("cancorder.commands._")

    found = []
    for module, targets in GRAPH.items():
        if module.startswith("cancorder.commands.") and not module.rpartition(".")[2].startswith("_"):
            found += [(module, t) for t in targets if other_command(module)(t)]
    assert found == []


def test_every_exception_class_lives_in_errors():
    """errors.py (and the two of _fast it re-exports) hold every exception class, private
    names included."""
    homes = {"cancorder.errors", "cancorder._fast.wire", "cancorder._fast"}
    found = []
    for module, path in _modules():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(base, (ast.Name, ast.Attribute)) and
                    (getattr(base, "id", None) or getattr(base, "attr", "")).endswith(
                        ("Error", "Exception")) for base in node.bases):
                if module not in homes:
                    found.append(f"{module}.{node.name}")
    assert found == []


def test_every_exception_class_is_used():
    """No class in errors.py that nothing raises or catches (the package names each one
    outside errors.py)."""
    errors_path = os.path.join(PACKAGE, "errors.py")
    classes = [node.name for node in ast.parse(open(errors_path, encoding="utf-8").read()).body
               if isinstance(node, ast.ClassDef)]
    names = set()
    for module, path in _modules():
        if path == errors_path:
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.name)
    assert classes and [name for name in classes if name not in names] == []


def test_the_rules_can_fail():
    """The checker sees imports at all (a broken walker would pass every rule)."""
    assert "cancorder._fast.wire" in GRAPH["cancorder.sources.base"]
    assert "cancorder.server" in GRAPH["cancorder.commands._server_args"]


# ---- issue 21: no import circle, consumers apart, config through the public parsers ----

def _module_edges():
    """module -> the cancorder modules it imports (names inside modules dropped). Importing a
    package's module imports the package too (its __init__ runs first), except for a package
    the importer lives in (its __init__ ran already, whatever it imports)."""
    edges = {}
    for module, targets in GRAPH.items():
        found = set()
        for target in targets:
            while target and target not in GRAPH:
                target = target.rpartition(".")[0]  # cancorder.sinks.base.RecordSink -> module
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        edges[module] = {t for t in found if t != module and not module.startswith(t + ".")}
    return edges


def _cycles(edges):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere_in_the_package():
    """Computed from every import of every module (lazy ones inside functions too)."""
    assert _cycles(_module_edges()) == []


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


CONSUMERS = {m for m in GRAPH if m.startswith("cancorder.sinks.")} - {
    "cancorder.sinks.base", "cancorder.sinks.registry"}


def test_consumers_import_no_other_consumer():
    assert len(CONSUMERS) >= 4  # printer, recorder, socketcand, mqtt
    edges = _module_edges()
    assert sorted((m, t) for m in CONSUMERS for t in edges[m] if t in CONSUMERS - {m}) == []


def test_the_server_imports_only_the_sinks_interface():
    edges = _module_edges()
    assert {t for t in edges["cancorder.server"] if t.startswith("cancorder.sinks")} == {
        "cancorder.sinks", "cancorder.sinks.base"}
    # nor does the interface import a consumer or the registry
    assert {t for t in edges["cancorder.sinks.base"] if t.startswith("cancorder.")} <= {
        "cancorder.sinks"}


def _flag_names():
    """Every spelling of every flag of the serving commands: option strings, keys, dests."""
    from cancorder.cli import serving_sources

    names = set()
    for source in serving_sources().values():
        for action in source.parser.flags:
            if action in source.parser.command_line_flags:
                continue  # no config key (--name: a [[bus]] has its own name key, the same word)
            names.update(action.option_strings)
            names.update(s.lstrip("-").replace("-", "_") for s in action.option_strings)
            names.update(s.lstrip("-") for s in action.option_strings)
            names.add(action.dest)
    names.discard("help")  # --help is argparse's, named by nobody
    return names


CONFIG = "cancorder.commands._config"


def _named_in(module):
    """The strings and attribute names a module's code holds."""
    path = dict(_modules())[module]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


def test_the_config_module_names_no_flag():
    flags = _flag_names()
    assert {"--metrics", "port", "mqtt_spool", "auto", "verbose"} <= flags  # it sees them
    assert sorted(_named_in(CONFIG) & flags) == []


def _argparse_private_names():
    """argparse's private names: its module's and its parsers', groups' and actions'."""
    import argparse

    parser = argparse.ArgumentParser()
    group = parser.add_argument_group("g")
    objects = (argparse, parser, group, parser.add_argument("--x"),
               parser.add_subparsers())
    return {name for thing in objects for name in dir(thing)
            if name.startswith("_") and not name.startswith("__")}


def test_no_private_argparse_attribute_is_used():
    private = _argparse_private_names()
    assert {"_actions", "_defaults", "_SubParsersAction", "_StoreConstAction"} <= private
    found = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            name = node.attr if isinstance(node, ast.Attribute) else \
                node.args[1].value if isinstance(node, ast.Call) and \
                getattr(node.func, "id", None) == "getattr" and len(node.args) > 1 and \
                isinstance(node.args[1], ast.Constant) else None
            if name in private:
                found.append(f"{module}:{node.lineno} {name}")
    assert found == []


def test_the_tests_mirror_the_package():
    """A module's tests are found next to its name: a folder of tests/ that holds test files is
    named after a package of cancorder (tests/sinks/ for cancorder/sinks/ ...)."""
    tests = os.path.join(ROOT, "tests")
    for folder in sorted(os.listdir(tests)):
        path = os.path.join(tests, folder)
        if not os.path.isdir(path):
            continue
        if any(name.startswith("test_") and name.endswith(".py") for name in os.listdir(path)):
            assert os.path.isfile(os.path.join(PACKAGE, folder, "__init__.py")), \
                f"tests/{folder}/ holds tests, but cancorder has no package {folder}"
