#!/usr/bin/env bash
# Development-only CA and certificates for dcr-gateway's TLS/mTLS tests.
#
#   certs/gen.sh [--force] [OUT_DIR]      (OUT_DIR defaults to certs/dev)
#
# Writes into OUT_DIR (EC P-256 keys as PKCS#8 PEM, X.509 v3 certificates):
#   ca.pem ca.key                    CA "dcr-gateway dev CA" (10 years)
#   server.pem server.key            CN localhost, SAN DNS:localhost IP:127.0.0.1, serverAuth
#   client.pem client.key            CN dcr-gateway-client, clientAuth
#   other-ca.pem other-ca.key        an unrelated CA "dcr-gateway other dev CA"
#   other-client.pem other-client.key  client cert signed by other-ca (negative tests)
# Does nothing if all files exist, verify and stay valid for another day, unless --force.
# Prints OUT_DIR (absolute) on stdout.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DCR_PROG=gen.sh
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/../scripts/lib.sh"

readonly CA_DAYS=3650
readonly LEAF_DAYS=825
readonly ORG="dcr-gateway development"
readonly FILES=(ca.pem ca.key server.pem server.key client.pem client.key
    other-ca.pem other-ca.key other-client.pem other-client.key)

usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

force=0
out=""
while (($# > 0)); do
    case $1 in
    --force) force=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*) die "unknown option '$1' (usage: gen.sh [--force] [OUT_DIR])" ;;
    *)
        [[ -z $out ]] || die "only one OUT_DIR may be given (usage: gen.sh [--force] [OUT_DIR])"
        out=$1
        ;;
    esac
    shift
done
out=${out:-$SCRIPT_DIR/dev}

require_cmd openssl

# verifies CAFILE CERT PURPOSE — CERT chains to CAFILE for PURPOSE (sslserver|sslclient).
verifies() {
    openssl verify -purpose "$3" -CAfile "$1" "$2" >/dev/null 2>&1
}

up_to_date() {
    local f
    for f in "${FILES[@]}"; do
        [[ -s $out/$f ]] || return 1
    done
    for f in ca server client other-ca other-client; do
        openssl x509 -noout -checkend 86400 -in "$out/$f.pem" >/dev/null 2>&1 || return 1
    done
    verifies "$out/ca.pem" "$out/server.pem" sslserver &&
        verifies "$out/ca.pem" "$out/client.pem" sslclient &&
        verifies "$out/other-ca.pem" "$out/other-client.pem" sslclient
}

if ((force == 0)) && [[ -d $out ]] && up_to_date; then
    log "certificates in $out are present and valid; nothing to do (--force regenerates)"
    (cd "$out" && pwd)
    exit 0
fi

mkdir -p -- "$out" || die "cannot create $out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/.gen.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
umask 077

# serial — random positive 128-bit serial number.
serial() {
    local hex
    hex=$(openssl rand -hex 16)
    printf '0x1%s\n' "${hex:1}"
}

# new_key NAME — EC P-256 private key as PKCS#8 PEM ("BEGIN PRIVATE KEY").
new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key" 2>/dev/null ||
        die "openssl genpkey failed for $1"
    head -n 1 "$work/$1.key" | grep -qx -- '-----BEGIN PRIVATE KEY-----' ||
        die "$1.key is not a PKCS#8 PEM key"
}

# make_ca NAME CN — self-signed CA certificate NAME.pem with key NAME.key.
make_ca() {
    local name=$1 cn=$2
    new_key "$name"
    cat >"$work/$name.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
O = $ORG
CN = $cn
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -new -x509 -config "$work/$name.cnf" -key "$work/$name.key" \
        -sha256 -days "$CA_DAYS" -set_serial "$(serial)" -out "$work/$name.pem" 2>"$work/err" ||
        die "cannot create CA $name: $(cat "$work/err")"
}

# make_leaf NAME CA CN EKU SAN — end-entity certificate NAME.pem signed by CA.
make_leaf() {
    local name=$1 ca=$2 cn=$3 eku=$4 san=$5
    new_key "$name"
    cat >"$work/$name.req.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
O = $ORG
CN = $cn
EOF
    cat >"$work/$name.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    openssl req -new -config "$work/$name.req.cnf" -key "$work/$name.key" \
        -out "$work/$name.csr" 2>"$work/err" ||
        die "cannot create the request for $name: $(cat "$work/err")"
    openssl x509 -req -in "$work/$name.csr" -CA "$work/$ca.pem" -CAkey "$work/$ca.key" \
        -set_serial "$(serial)" -sha256 -days "$LEAF_DAYS" -extfile "$work/$name.ext" \
        -out "$work/$name.pem" 2>"$work/err" ||
        die "cannot sign $name with $ca: $(cat "$work/err")"
}

make_ca ca "dcr-gateway dev CA"
make_leaf server ca localhost serverAuth "DNS:localhost, IP:127.0.0.1"
make_leaf client ca dcr-gateway-client clientAuth "DNS:dcr-gateway-client"
make_ca other-ca "dcr-gateway other dev CA"
make_leaf other-client other-ca dcr-gateway-other-client clientAuth "DNS:dcr-gateway-other-client"

# Sanity: the chains hold, and the other CA's client is not accepted by ours.
verifies "$work/ca.pem" "$work/server.pem" sslserver || die "server.pem does not verify against ca.pem"
verifies "$work/ca.pem" "$work/client.pem" sslclient || die "client.pem does not verify against ca.pem"
verifies "$work/other-ca.pem" "$work/other-client.pem" sslclient ||
    die "other-client.pem does not verify against other-ca.pem"
if verifies "$work/ca.pem" "$work/other-client.pem" sslclient; then
    die "other-client.pem unexpectedly verifies against ca.pem"
fi

for f in "${FILES[@]}"; do
    case $f in
    *.key) chmod 600 "$work/$f" ;;
    *) chmod 644 "$work/$f" ;;
    esac
    mv -f -- "$work/$f" "$out/$f"
done
log "wrote development CA and certificates to $out"
printf '%s\n' "$out"
