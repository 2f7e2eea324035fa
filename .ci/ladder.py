"""Checks that the modules of each crate form a ladder: an edge A -> B when a
file of module A names `crate::B` or `super::B` (a parent declares and uses its
children), and no circle of such edges. Unit-test modules (`tests.rs`, a
`tests/` folder of modules, inline `mod tests`) may look anywhere. Usage: ladder.py CRATE_DIR...; exits 1 on a circle."""
import os, re, sys
def modname(root, path):
    rel = os.path.relpath(path, root)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
    return '::'.join(parts) or 'crate'
def analyse(root):
    files = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            m = modname(root, os.path.join(d, f)) if f.endswith('.rs') else ''
            if m and 'tests' not in m.split('::'): files[m] = os.path.join(d, f)
    mods = set(files)
    edges = {m: set() for m in mods}
    for m, p in files.items():
        src = open(p).read()
        src = re.sub(r'(?s)#\[cfg\(test\)\]\s*mod tests \{.*', '', src)  # unit tests may look anywhere
        src = re.sub(r'//[^\n]*', '', src)
        src = re.sub(r'pub\(in [^)]*\)', '', src)  # a visibility, not an import
        parent = m.rsplit('::', 1)[0] if '::' in m else ''
        is_dir_mod = files[m].endswith(('mod.rs', 'lib.rs'))
        base = '' if m == 'crate' else m
        # expand one level of `use a::{b, c::d}` into a::b, a::c::d
        def expand(mt):
            head, inner = mt.group(1), mt.group(2)
            return ' '.join(head + '::' + p.strip() for p in inner.split(',') if p.strip())
        src = re.sub(r'\b((?:crate|super)(?:::\w+)*)::\{([^{}]*)\}', expand, src)
        for path in re.findall(r'\b((?:crate|super)(?:::\w+)+)', src):
            segs = path.split('::')
            if segs[0] == 'crate': segs = segs[1:]
            else:
                b = base.split('::') if base else []
                while segs and segs[0] == 'super':
                    segs = segs[1:]; b = b[:-1] if b else []
                segs = b + segs
            # longest module prefix
            target = None
            for i in range(len(segs), 0, -1):
                cand = '::'.join(segs[:i])
                if cand in mods: target = cand; break
            if target and target != m and not target.startswith(m + '::') and not m.startswith(target + '::'):
                edges[m].add(target)
            elif target and m.startswith(target + '::') and target != 'crate':
                # a child importing from its parent module file
                edges[m].add(target)
    # a parent module declares (and uses, re-exports) its children: parent -> child
    for m in mods:
        if m != 'crate':
            parent = m.rsplit('::', 1)[0] if '::' in m else 'crate'
            edges[parent].add(m)
    # find cycles (Tarjan)
    index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop(); on.discard(w); c.append(w)
                if w == v: break
            if len(c) > 1: sccs.append(c)
    for v in sorted(mods):
        if v not in index: strong(v)
    return edges, sccs
failed = False
for crate in sys.argv[1:]:
    edges, sccs = analyse(os.path.join(crate, 'src'))
    print(f'{crate}: {len(edges)} modules, {sum(map(len, edges.values()))} import edges, circles: {sccs or "none"}')
    if os.environ.get('VERBOSE'):
        for m in sorted(edges): print('  ', m, '->', sorted(edges[m]))
    failed = failed or bool(sccs)
sys.exit(1 if failed else 0)
