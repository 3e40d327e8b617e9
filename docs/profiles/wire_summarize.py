"""Top functions by inclusive and self time from collapsed stacks.
Line numbers are dropped (function = name (file))."""
import collections, re, sys
path = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
incl = collections.Counter(); self_ = collections.Counter(); total = 0
for line in open(path):
    stack, _, n = line.rstrip("\n").rpartition(" ")
    n = int(n); total += n
    frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
    for f in set(frames):
        incl[f] += n
    self_[frames[-1]] += n
print(f"samples: {total}\n")
for title, c in (("inclusive", incl), ("self", self_)):
    print(f"| % {title} | function |\n|---:|---|")
    for f, n in c.most_common(top):
        print(f"| {100*n/total:.1f} | `{f}` |")
    print()
