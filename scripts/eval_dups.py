#!/usr/bin/env python3
"""Duplicate-detection quality on ../shared/eval/debian-dev: reads a store of
its corpus and the `pareil dups --json` report of that store, and prints
recall of human translations (per kind of text and per language pair),
precision of semantic findings, and joins of different packages' headings.

Labels (derived from the data set's own alignment, except the last kind, read by hand):
- positives: each translated paragraph and its English original
  (translations.jsonl), and two translations of the same English text into
  two languages (FR-DE, IT-ES, ...);
- a semantic pair is counted right when both sides render the same English
  text (the original and its translations, or two translations of it), or
  when translators rendered the two English texts identically in some
  language (they judged them to say the same);
- sure negatives: headings of two different packages (headings.jsonl);
- same-language pairs read by hand (scripts/data/same-language-labels.tsv):
  the distinct pairs of one language that the evidence reads as one
  template filled twice (`src/dedup/evidence.rs`), taken from the
  development store's neighbour lists — all 123 at cosine >= 0.975 and a
  random 45 of the 160 from 0.965 to 0.975 — each labelled `same`
  when the two say the same thing in other words ("contains" / "provides
  the shared library") and `different` when the filler differs ("binary" /
  "compact protocol").
Other same-language paraphrases of different English sentences count as
wrong here, so the precision printed is a lower bound.
Usage: eval_dups.py STORE.db DUPS.json [DATA_DIR]"""
import collections, itertools, json, random, sqlite3, sys

db, report = sys.argv[1], sys.argv[2]
data = sys.argv[3] if len(sys.argv) > 3 else '../shared/eval/debian-dev'
con = sqlite3.connect(db)
at = {}   # FILE:LINE -> passage id
text = {}
for pid, path, line, t in con.execute(
        'select p.id, d.path, p.line_start, p.text from passages p join documents d on d.id = p.doc_id'):
    at[f"{path.rsplit('/', 1)[-1]}:{line}"] = pid
    text[pid] = t
norm = lambda t: ' '.join(t.lower().split())
trans = [json.loads(l) for l in open(f'{data}/translations.jsonl')]
heads = [json.loads(l) for l in open(f'{data}/headings.jsonl')]
source = {pid: norm(t) for pid, t in text.items()}          # English text each passage renders
for t in trans:
    source[at[t['translated']]] = norm(text[at[t['english'][0]]])
lang_of = {pid: None for pid in text}
for t in trans:
    lang_of[at[t['translated']]] = t['lang']
    for e in t['english']:
        lang_of[at[e]] = 'en'
renders = collections.defaultdict(set)                     # (english, lang) -> translated texts
for t in trans:
    renders[(source[at[t['translated']]], t['lang'])].add(norm(text[at[t['translated']]]))
read = {}   # (norm a, norm b) -> True when labelled the same meaning
for line in open(__file__.rsplit('/', 1)[0] + '/data/same-language-labels.tsv'):
    if not line.startswith('#'):
        label, _, x, y = line.rstrip('\n').split('\t')
        read[(x, y)] = read[(y, x)] = label == 'same'
def same_meaning(a, b):
    if source[a] == source[b] or read.get((norm(text[a]), norm(text[b]))):
        return True
    return any(renders[(source[a], l)] & renders[(source[b], l)] for l in ('fr', 'de', 'it', 'es'))

rep = json.load(open(report))
parent = {}
def find(x):
    parent.setdefault(x, x)
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x
for f in rep['findings']:
    for a, b in zip(f['canonical']['ids'], f['duplicate']['ids']):
        parent[find(a)] = find(b)
joined = lambda a, b: find(a) == find(b)

def kind_of(t):
    return 'heading' if t['heading'] else ('under 8 words' if t['words'] < 8 else '8 words or more')
found, total = collections.Counter(), collections.Counter()
by_source = collections.defaultdict(dict)
for t in trans:
    if t['identical']:
        continue
    a = at[t['translated']]
    ok = any(joined(a, at[e]) for e in t['english'])
    by_source[(source[a], t['english'][0])][t['lang']] = a
    for key in ('all', kind_of(t), f"en-{t['lang']}"):
        total[key] += 1
        found[key] += ok
for langs in by_source.values():
    for (la, a), (lb, b) in itertools.combinations(sorted(langs.items()), 2):
        total[f'{la}-{lb}'] += 1
        found[f'{la}-{lb}'] += joined(a, b)
print('translations found (translated paragraph in the same group as its original)')
for key in sorted(total, key=lambda k: (len(k) < 6, k)):
    print(f'  {key:18} {found[key] / total[key]:6.1%}  ({found[key]}/{total[key]})')

pairs = []
for f in rep['findings']:
    if f['kind'] == 'semantic':
        pairs += list(zip(f['canonical']['ids'], f['duplicate']['ids']))
right = collections.Counter(); seen = collections.Counter(); wrong = []
for a, b in pairs:
    cross = lang_of.get(a) and lang_of.get(b) and lang_of[a] != lang_of[b]
    key = 'across languages' if cross else 'same language'
    ok = same_meaning(a, b)
    for k in ('all', key):
        seen[k] += 1
        right[k] += ok
    if not ok:
        wrong.append((a, b))
print('semantic findings: precision (lower bound, see the header)')
for k in ('all', 'across languages', 'same language'):
    if seen[k]:
        print(f'  {k:18} {right[k] / seen[k]:6.1%}  ({right[k]}/{seen[k]})')
head_ids = [(at[h['at']], h['package']) for h in heads]
groups = collections.defaultdict(set)
for pid, pkg in head_ids:
    groups[find(pid)].add(pkg)
false_heads = sum(len(p) * (len(p) - 1) // 2 for p in groups.values())
print(f'headings of different packages joined: {false_heads} pairs among {len(head_ids)} headings')
labelled = (sum(total[k] for k in total if '-' in k) + len(pairs) + len(read) // 2
            + len(head_ids) * (len(head_ids) - 1) // 2)
print(f'labelled pairs used: {labelled}')
for a, b in random.Random(0).sample(wrong, min(int(sys.argv[4]) if len(sys.argv) > 4 else 0, len(wrong))):
    print(f'  wrong? {text[a][:70]!r}\n         {text[b][:70]!r}')
