#!/usr/bin/env python3
"""Counts, per scoring ValueSet in profiles/, the SNOMED CT concepts listed, the is-a heads, the
ICD-10 groups of Quan 2005 in its regex, the ICPC-2 rubrics and LOINC codes, nested value sets
and exclusions. Usage: python3 scripts/count_scoring_value_sets.py (from the repository root)"""
import json,glob,re
for f in sorted(glob.glob('profiles/valueset-scoring-*.json')):
    v=json.load(open(f)); inc=v['compose']['include']; exc=v['compose'].get('exclude',[])
    sct=set(); heads=[]; icd=None; icpc=set(); loinc=set(); nested=[]
    for p in inc:
        s=p.get('system')
        for c in p.get('concept',[]):
            {'http://snomed.info/sct':sct,'http://hl7.org/fhir/sid/icpc-2':icpc,'http://loinc.org':loinc}.get(s,set()).add(c['code'])
        for fl in p.get('filter',[]):
            if fl['op']=='is-a': heads.append(fl['value'])
            if fl['op']=='regex' and s.endswith('icd-10'): icd=fl['value']
        nested+=p.get('valueSet',[])
    prefixes=len(re.findall(r'[A-Z]\d\d(?:\\\\\.\?\w)?', icd)) if icd else 0
    ex=[fl['value'] for p in exc for fl in p.get('filter',[])]+[c['code'] for p in exc for c in p.get('concept',[])]
    print(f"{v['id'][8:]:42} SCT listed {len(sct):2} is-a {','.join(heads) or '-':45} ICD-10 Quan groups {prefixes:2} ICPC-2 {len(icpc):2} LOINC {len(loinc)} {'nested '+','.join(n.rsplit('/',1)[1] for n in nested) if nested else ''} {'excl '+','.join(ex) if ex else ''}")
