"""Verifies a kiln attestation as an outside tool would: securesystemslib's DSSE envelope and
ed25519 key (PyPI securesystemslib[crypto]), then reads the in-toto statement's subject.

usage: verify_dsse.py ENVELOPE.intoto.jsonl KILN_PUB_FILE
prints: the statement's predicateType, then each subject as NAME SHA256; exits 1 if it fails.
"""
import base64
import json
import sys

from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

envelope_path, pub_path = sys.argv[1], sys.argv[2]
with open(envelope_path) as f:
    envelope = Envelope.from_dict(json.loads(f.readline()))
tag, public, *_ = open(pub_path).read().split()
assert tag == "kiln-ed25519", tag
# The envelope names the key it was signed with; the public key itself comes from kiln.pub.
keyid = next(iter(envelope.signatures), "none")
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": base64.b64decode(public).hex()})
try:
    envelope.verify([key], 1)
except Exception as error:  # securesystemslib raises VerificationError
    print(f"verification failed: {error}")
    sys.exit(1)
statement = json.loads(envelope.payload)
print(statement["predicateType"])
for subject in statement["subject"]:
    print(subject["name"], subject["digest"]["sha256"])
