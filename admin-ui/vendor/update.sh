#!/usr/bin/env bash
# Re-vendors the UI's third-party code through npm, or checks what is vendored.
#
#   admin-ui/vendor/update.sh 3.5.47     fetch vue@3.5.47 from the npm registry, check the
#                                        tarball against the registry's integrity hash, copy its
#                                        runtime-only ESM production build and licence here, and
#                                        record version and sha256 in VENDOR.md
#   admin-ui/vendor/update.sh --check    check the vendored files against VENDOR.md
#
# The build embeds whatever is here; `cargo test -p hermes-admin-ui` fails when a vendored file
# is not the one VENDOR.md records.
set -euo pipefail
cd "$(dirname "$0")"
FILES=(vue/vue.runtime.esm-browser.prod.js vue/LICENSE)

if [ "${1:-}" = "--check" ]; then
  for f in "${FILES[@]}"; do
    grep -q "^$(sha256sum "$f" | cut -d' ' -f1)  vendor/$f\$" VENDOR.md || { echo "vendor/$f: not the file VENDOR.md records" >&2; exit 1; }
  done
  echo "vendored files match VENDOR.md"
  exit 0
fi

VERSION=${1:?usage: update.sh <vue version> | --check}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack "vue@$VERSION" --silent >/dev/null)
TARBALL="$TMP/vue-$VERSION.tgz"
# npm pack checks the download; check it again against what the registry publishes.
EXPECTED=$(npm view "vue@$VERSION" dist.integrity)
ACTUAL="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 -w0)"
[ "$EXPECTED" = "$ACTUAL" ] || { echo "vue@$VERSION: tarball integrity $ACTUAL, registry says $EXPECTED" >&2; exit 1; }
tar -xzf "$TARBALL" -C "$TMP"
cp "$TMP/package/dist/vue.runtime.esm-browser.prod.js" vue/
cp "$TMP/package/LICENSE" vue/LICENSE
{
  echo "# Vendored code of the web UI"
  echo
  echo "Written by \`update.sh\`; do not edit by hand."
  echo
  echo "| package | version | registry integrity | licence |"
  echo "|---|---|---|---|"
  echo "| vue (runtime-only ESM production build, \`dist/vue.runtime.esm-browser.prod.js\`) | $VERSION | \`$EXPECTED\` | MIT, \`vue/LICENSE\` |"
  echo
  echo "sha256 of each vendored file:"
  echo
  echo '```'
  for f in "${FILES[@]}"; do echo "$(sha256sum "$f" | cut -d' ' -f1)  vendor/$f"; done
  echo '```'
} >VENDOR.md
echo "vendored vue@$VERSION"
