# held-out text for tools/quant_loss.py: docstrings of 20 standard-library modules (module, then its
# public classes and functions, in dir() order), cut at 40,000 characters
import importlib, inspect
mods = ["json", "csv", "heapq", "bisect", "textwrap", "string", "fnmatch", "glob", "shutil", "tempfile",
        "queue", "sched", "difflib", "pprint", "base64", "hashlib", "zipfile", "argparse", "logging", "statistics"]
out = []
for name in mods:
    m = importlib.import_module(name)
    d = inspect.getdoc(m)
    if d: out.append(d)
    for a in dir(m):
        if a.startswith("_"): continue
        o = getattr(m, a)
        if inspect.isclass(o) or inspect.isfunction(o):
            d = inspect.getdoc(o)
            if d: out.append(d)
print("\n\n".join(out)[:40000])
