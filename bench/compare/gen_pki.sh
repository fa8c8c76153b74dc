#!/usr/bin/env bash
# gen_pki.sh DIR ecdsa|rsa [N]
# One PKI with openssl: root CA -> intermediate CA -> server (localhost) and N client leaves.
# Writes in DIR: root-ca.pem, intermediate.pem, trust.pem (the viewer trust store: the root),
# server.pem (leaf + intermediate), server.key, server-combined.pem (haproxy: chain + key),
# server-leaf.pem, and certs/client-I.pem (leaf + intermediate) + certs/client-I.key.
# Keys are PKCS#8. ECDSA: P-256 / SHA-256. RSA: 2048 bits / SHA-256.
set -euo pipefail
dir=$1 kind=$2 n=${3:-16}
mkdir -p "$dir/certs"
cd "$dir"

newkey() {
  case $kind in
    ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
    *) echo "gen_pki.sh: unknown kind $kind" >&2; exit 2 ;;
  esac
}

cat > ext.cnf <<'CNF'
[req]
distinguished_name = dn
x509_extensions = ca
[dn]
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
CNF

newkey root-ca.key
openssl req -new -x509 -config ext.cnf -key root-ca.key -sha256 -days 30 \
  -subj "/O=Portcullis bench/CN=bench root CA ($kind)" -out root-ca.pem 2>/dev/null

issue() { # issue KEY CSR_SUBJ EXT ISSUER_CERT ISSUER_KEY OUT
  openssl req -new -key "$1" -subj "$2" -out "$6.csr" 2>/dev/null
  openssl x509 -req -in "$6.csr" -CA "$4" -CAkey "$5" -set_serial "0x$(openssl rand -hex 12)" \
    -days 30 -sha256 -extfile ext.cnf -extensions "$3" -out "$6" 2>/dev/null
  rm -f "$6.csr"
}

newkey intermediate.key
issue intermediate.key "/O=Portcullis bench/CN=bench intermediate CA ($kind)" intermediate root-ca.pem root-ca.key intermediate.pem
newkey server.key
issue server.key "/O=Portcullis bench/CN=localhost" server intermediate.pem intermediate.key server-leaf.pem
cat server-leaf.pem intermediate.pem > server.pem
cat server.pem server.key > server-combined.pem
cp root-ca.pem trust.pem
for i in $(seq 0 $((n - 1))); do
  newkey "certs/client-$i.key"
  issue "certs/client-$i.key" "/O=Portcullis bench/OU=viewers/CN=client-$i" client intermediate.pem intermediate.key "certs/client-$i.leaf"
  cat "certs/client-$i.leaf" intermediate.pem > "certs/client-$i.pem"
  rm -f "certs/client-$i.leaf"
done
openssl verify -CAfile root-ca.pem -untrusted intermediate.pem server-leaf.pem >/dev/null
openssl verify -CAfile root-ca.pem -untrusted intermediate.pem certs/client-0.pem >/dev/null
