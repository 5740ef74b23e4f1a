"""The default before and after this change (lr_if_features_fit, augment: auto), paired per task and
seed from the committed suite rows: the old default is the first default row of each draw on the
2026-12-06 code, or the lr3e4 row of suite_features_fit.jsonl where the lr rule applies. Prints the
table of benchmarks/results/default_change_probe.md."""
import json
import statistics as st
import sys

sys.path.insert(0,'benchmarks'); import suite
rows=[json.loads(l) for l in open(suite.RESULTS/'suite.jsonl')]
new={(r['instance'],r['seed']):r['test_accuracy'] for r in suite.read_done(suite.RESULTS/'suite.jsonl') if r['method']=='default'}
old={}
for r in rows:  # the default as it was before this session's changes: the first default row of each draw on 2026-12-06 code
    if r['method']!='default' or 'error' in r: continue
    sup=r.get('superseded','')
    if sup.startswith('re-measured with lr_if_features_fit') or sup.startswith('re-measured with augment: auto') or not sup:
        old.setdefault((r['instance'],r['seed']), r['test_accuracy'])
# the old all-layers rate (3e-4 on every seed) where the lr rule applies: measured as lr3e4 beside it
for r in suite.read_done(suite.RESULTS/'suite_features_fit.jsonl'):
    if r['method']=='lr3e4':
        old[(r['instance'],r['seed'])]=r['test_accuracy']
for k in [k for k in old if k[0]=='old-photo-crops-20' and k[1]>=10]:
    del old[k]  # seeds 10-19 ran on the new default only
lines=["| task | seeds | old default | new default | new - old (paired) |","|---|---|---|---|---|"]
means=[]
for inst in [i.name for i in suite.INSTANCES]:
    ks=sorted(k for k in new if k[0]==inst and k in old)
    if not ks: continue
    d=[new[k]-old[k] for k in ks]; o=[old[k] for k in ks]; n=[new[k] for k in ks]
    sd=f" +- {st.stdev(d):.3f}" if len(d)>1 else ""
    lines.append(f"| {inst} | {len(ks)} | {st.mean(o):.3f} | {st.mean(n):.3f} | {st.mean(d):+.3f}{sd} |")
    means.append(st.mean(d))
lines.append(f"| **mean over {len(means)} tasks** | | | | {st.mean(means):+.3f} (worst {min(means):+.3f}) |")
print("\n".join(lines))
