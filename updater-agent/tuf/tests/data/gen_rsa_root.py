"""Generates rsa-pss-root.json: a root v1 signed by an RSA-PSS-SHA256 3072-bit key
(salt length = digest length, as securesystemslib signs), plus an empty signature of a
key with an unknown scheme. Run once; the output is checked in."""
import json
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def canonical(o):
    if isinstance(o, str):
        return '"' + o.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if o is True:
        return "true"
    if o is False:
        return "false"
    if o is None:
        return "null"
    if isinstance(o, int):
        return str(o)
    if isinstance(o, list):
        return "[" + ",".join(canonical(i) for i in o) + "]"
    return "{" + ",".join(canonical(k) + ":" + canonical(o[k]) for k in sorted(o)) + "}"


key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
pem = key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
rsa_id = "rsa-key-label"
odd_id = "unknown-scheme-key"
roles = {r: {"keyids": [rsa_id, odd_id], "threshold": 1} for r in ["root", "timestamp", "snapshot", "targets"]}
signed = {
    "_type": "root",
    "spec_version": "1.0.34",
    "version": 1,
    "expires": "2099-01-01T00:00:00Z",
    "consistent_snapshot": True,
    "keys": {
        rsa_id: {"keytype": "rsa", "scheme": "rsassa-pss-sha256", "keyval": {"public": pem}},
        odd_id: {"keytype": "future-type", "scheme": "future-scheme", "keyval": {"public": "xyz"}},
    },
    "roles": roles,
}
sig = key.sign(
    canonical(signed).encode(),
    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
    hashes.SHA256(),
)
doc = {"signatures": [{"keyid": rsa_id, "sig": sig.hex()}, {"keyid": odd_id, "sig": ""}], "signed": signed}
with open("rsa-pss-root.json", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
