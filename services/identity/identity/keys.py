"""`python -m identity.keys`: print a fresh Ed25519 signing key (PEM) for TOKEN_SIGNING_KEY(_FILE).

The kid goes to stderr so the PEM alone can be redirected into a file.
"""

import sys

from identity.tokens import generate_signing_key_pem, jwk_thumbprint, private_key_from_pem


def main() -> None:
    pem = generate_signing_key_pem()
    sys.stdout.write(pem)
    kid = jwk_thumbprint(private_key_from_pem(pem).public_key())
    print(f"kid: {kid}", file=sys.stderr)


if __name__ == "__main__":
    main()
