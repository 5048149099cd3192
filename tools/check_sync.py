"""Fail if nbdev_export or nbdev_clean would change anything: nbs/ is the source of truth for gcav_nb/."""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _digest(folder: str) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((ROOT/folder).rglob('*'))
            if p.is_file() and '__pycache__' not in p.parts and not p.name.endswith('.failed.ipynb')}   # run_nb's partial copies: git-ignored

def main():
    before = {**_digest('gcav_nb'), **_digest('nbs')}
    for cmd in ('nbdev_export', 'nbdev_clean'): subprocess.run([cmd], cwd=ROOT, check=True)
    after = {**_digest('gcav_nb'), **_digest('nbs')}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        sys.exit("notebooks and gcav_nb/ were out of sync (nbdev_export/nbdev_clean changed: "
                 + ', '.join(changed) + "); run them and commit both")
    print(f"sync ok: {len(after)} files in nbs/ and gcav_nb/ unchanged by nbdev_export + nbdev_clean")

if __name__ == '__main__': main()
