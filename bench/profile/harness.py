"""What bench/profile/run.py and load-memory.py share: the enforcer they post events to and the
wrk scripts of the `rest` and `mcp` mixes, on whatever private ports the caller set on `bench`."""
import os, subprocess, tempfile
from pathlib import Path


def start(b, out: Path, prefix: str):
    """Starts the enforcer (with one revocation, so the filters' live state is in use) and writes
    the wrk scripts with a triage-bot token. Returns (logs directory, enforcer, {mix: script})."""
    logs = Path(tempfile.mkdtemp(prefix=prefix))
    tok = subprocess.run([str(b.INTERLOCK), "token", "--agent", "triage-bot", "--user", "bench", "--session", "bench-triage-bot", "--ttl", "86400"], capture_output=True, text=True, check=True).stdout.strip()
    enf = b.start_helper([str(b.INTERLOCK), "serve", "--listen", b.ENFORCER, "--data-dir", str(logs / "enf"), "--kernel", "off"], b.ENFORCER, "enforcer", logs / "enf.log")
    subprocess.run([str(b.INTERLOCK), "revoke", "--enforcer", f"http://{b.ENFORCER}", "--user", "bench-nobody", "--reason", "v1"], capture_output=True, text=True, env={**os.environ, "INTERLOCK_ADMIN_TOKEN_FILE": str(logs / "enf" / "admin.token")})
    scripts = {m: b.wrk_script(b.demo_request(m), tok, out / f"wrk-{m}.lua") for m in ("rest", "mcp")}
    return logs, enf, scripts
