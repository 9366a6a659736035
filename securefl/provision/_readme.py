"""The README.md written into every kit: what the folder is and the command to run."""

from __future__ import annotations

__all__ = ["kit_readme"]

_SERVER = """# securefl server kit: federation `{federation}`

This folder is the coordinator's kit. It lets this machine run the federation's
server at {url}. It holds no patient data and no certificate authority key.

Run it from the folder that holds this kit folder:

    securefl server --kit {path}

What is here:

- `tls.cert.pem`, `tls.key.pem` (owner-only): the server's TLS certificate
  (serverAuth, for {hosts}) and its private key.
- `identity.key.pem` (owner-only): the server's Ed25519 key; it signs every
  message the server sends, and sites check it against the roster.
- `status.token` (owner-only): a read-only bearer token for `/status`.
- `ca.cert.pem`: the federation's certificate authority, the only one trusted.
- `crl.pem`: the revocation list; replace it with the coordinator's newer copy
  after `securefl provision revoke` (the server reloads it when it changes).
- `roster.json`: the parties, their keys (each site's BLS key with its proof
  of possession among them) and certificate fingerprints, signed by the
  federation CA.
- `federation.toml`: the settings every party agreed on.
- `model.safetensors`, `spec.json`: the initial model.
- `state/`: created on first run: the server's signed round log and the roster
  an auditor holds the sites' records against, and what a restart resumes
  from (`journal.jsonl`, `checkpoints/`, in he mode `he_keys.bin`). Start the
  server again on this kit after a crash or reboot; back up the whole folder
  while the server is stopped.

Keep the owner-only files readable by the account that runs the server only.
"""

_SITE = """# securefl site kit: `{party}` in federation `{federation}`

This folder is the kit of the site `{party}`. It lets this hospital join the
federation. The site connects out to the server at {url}; nothing listens here.

Run it from the folder that holds this kit folder, with your own training
function:

    securefl client --kit {path} --train my_trainer:train

or with a CSV file of your data:

    securefl client --kit {path} --data ward.csv --label outcome

What is here:

- `tls.cert.pem`, `tls.key.pem` (owner-only): this site's TLS client
  certificate (clientAuth, subject CN = `{party}`) and its private key.
- `identity.key.pem` (owner-only): this site's Ed25519 key; it signs its
  messages and its privacy records.
- `exchange.key.pem` (owner-only): this site's X25519 key, used to receive the
  encryption keys in `he` mode.
- `ca.cert.pem`: the federation's certificate authority, the only one trusted.
- `roster.json`: the parties and their keys, signed by the federation CA. This
  site refuses any party that is not on it, and a roster naming another BLS
  key for it than its identity key derives.
- `federation.toml`: the settings every party agreed on (privacy budget, rounds).
- `model.safetensors`, `spec.json`: the initial model.
- `state/`: created on first run: the privacy ledger, the round log, the
  signed privacy records and, at the he keymaker, `he_keymaker.bin` (the
  secret key every site decrypts with; owner-only). Never delete or replace
  it: the ledger is what keeps this site within its budget across restarts.
  Check the ε this site spent with
  `securefl audit {path_}state/records --roster {path_}roster.json --no-server-log`.

Patient data never enters this folder and never leaves the site.
"""

_PUBLIC_PART = """
This folder was made from the site's own certificate request: it holds no
private key. Copy its files into the folder where `securefl provision request`
wrote the site's keys (name that folder `{party}/`, or give its path to
`--kit`), then run the command above.
"""


def kit_readme(
    *, kind: str, party: str, federation: str, url: str, hosts: str, path: str, public_only: bool
) -> str:
    """The README of one kit."""
    if kind == "server":
        return _SERVER.format(federation=federation, url=url, hosts=hosts, path=path)
    folder = path if path.endswith("/") else path + "/"
    text = _SITE.format(party=party, federation=federation, url=url, path=path, path_=folder)
    return text + (_PUBLIC_PART.format(party=party) if public_only else "")
