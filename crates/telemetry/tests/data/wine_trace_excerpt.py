import re,sys
src,dst=sys.argv[1],sys.argv[2]
lines=open(src,encoding='utf-8',errors='replace').read().split('\n')
start=[i for i,l in enumerate(lines) if 'new_process(' in l and 'inj.exe' in l][0]
caller=lines[start][:4]
child_pid=None
for l in lines[start:start+50]:
    m=re.match(r'^'+caller+r': new_process\(\) = 0 \{ info=\w+, pid=(\w+)',l)
    if m: child_pid=m.group(1); break
tid2pid={}
for l in lines:
    m=re.match(r'^(\w{4}): init_first_thread\(\) = 0 \{ pid=(\w+), tid=(\w+)',l)
    if m: tid2pid[m.group(3)]=m.group(2)
pending={}
for l in lines:
    m=re.match(r'^(\w{4}): new_thread\( process=(\w+)',l)
    if m: pending[m.group(1)]=m.group(2)
    m=re.match(r'^(\w{4}): new_thread\(\) = 0 \{ tid=(\w+)',l)
    if m and pending.get(m.group(1))=='ffffffff' and m.group(1) in tid2pid:
        tid2pid[m.group(2)]=tid2pid[m.group(1)]
child=[t for t,p in tid2pid.items() if p==child_pid]
parent=[t for t,p in tid2pid.items() if p==tid2pid.get(caller)]
out=[]
for i,l in enumerate(lines):
    t=l[:4]
    if t in child or (t in parent and (i>=start or 'init_first_thread' in l)):
        out.append(re.sub(r'env=L"[^"]*"','env=L""',l))
open(dst,'w').write('\n'.join(out)+'\n')
print(len(out), 'child', child_pid, child, 'parent', parent)
