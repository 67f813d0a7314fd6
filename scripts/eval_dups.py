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
  "compact protocol");
- pooled pairs read by hand (scripts/data/pooled-labels.tsv): every
  distinct pair of texts in the semantic findings that the labels above
  cannot confirm, pooled from the reports of two rules (mutual best matches
  only, and with second renderings; src/dedup/semantic.rs), so both are
  judged on the same labels — `same` when one says what the other says (a
  translation or a rewording: article, number, "contains" / "provides" do
  not matter), `different` when what is described differs (a kind of file,
  a component, a name, a version) or one is more specific ("the
  documentation" / "the API documentation").
Labels are per text, not per passage: copies of one text are one text, so
a sentence that translators used for two English texts renders both.
Other pairs no label confirms count as wrong here, so the precision printed
is a lower bound. A passage's language is its file's (`fr_0003.txt`).
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
lang_of = {pid: name.split('_')[0] for name, pid in at.items()}
renders = collections.defaultdict(set)                     # (english, lang) -> translated texts
for t in trans:
    renders[(source[at[t['translated']]], t['lang'])].add(norm(text[at[t['translated']]]))
def labels(name):  # (norm a, norm b) -> True when read as the same meaning
    out = {}
    for line in open(__file__.rsplit('/', 1)[0] + '/data/' + name):
        if not line.startswith('#'):
            label, *_, x, y = line.rstrip('\n').split('\t')
            out[(x, y)] = out[(y, x)] = label == 'same'
    return out
templates, pooled = labels('same-language-labels.tsv'), labels('pooled-labels.tsv')
sources = collections.defaultdict(set)                     # text -> English texts it renders
for pid in text:
    sources[norm(text[pid])].add(source[pid])
def same_meaning(a, b, read):
    sa, sb = sources[norm(text[a])], sources[norm(text[b])]
    label = read.get((norm(text[a]), norm(text[b])))
    if label is not None:
        return label
    if sa & sb:
        return True
    return any(set().union(*(renders[(x, l)] for x in sa)) & set().union(*(renders[(y, l)] for y in sb))
               for l in ('fr', 'de', 'it', 'es'))

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
right = collections.Counter(); bound = collections.Counter(); seen = collections.Counter(); wrong = []
for a, b in pairs:
    key = 'across languages' if lang_of[a] != lang_of[b] else 'same language'
    ok = same_meaning(a, b, {**templates, **pooled})
    for k in ('all', key):
        seen[k] += 1
        right[k] += ok
        bound[k] += same_meaning(a, b, templates)
    if not ok:
        wrong.append((a, b))
print('semantic findings: precision (all labels; lower bound without the pooled ones read by hand)')
for k in ('all', 'across languages', 'same language'):
    if seen[k]:
        print(f'  {k:18} {right[k] / seen[k]:6.1%}  ({right[k]}/{seen[k]})'
              f'   without pooled labels {bound[k] / seen[k]:6.1%}')
head_ids = [(at[h['at']], h['package']) for h in heads]
groups = collections.defaultdict(set)
for pid, pkg in head_ids:
    groups[find(pid)].add(pkg)
false_heads = sum(len(p) * (len(p) - 1) // 2 for p in groups.values())
print(f'headings of different packages joined: {false_heads} pairs among {len(head_ids)} headings')
labelled = (sum(total[k] for k in total if '-' in k) + len(pairs) + (len(templates) + len(pooled)) // 2
            + len(head_ids) * (len(head_ids) - 1) // 2)
print(f'labelled pairs used: {labelled}')
for a, b in random.Random(0).sample(wrong, min(int(sys.argv[4]) if len(sys.argv) > 4 else 0, len(wrong))):
    print(f'  wrong? {text[a][:70]!r}\n         {text[b][:70]!r}')
