#!/bin/bash
# Build the shared k8s testbed (../shared/k8s-testbed/build-k8s.sh: once, cached in
# $K8S_TESTBED_DIR, default ~/.cache/k8s-testbed), then make its API server survive custom
# resources: Kubernetes 1.20 vendors modern-go/reflect2 v1.0.1, whose mapiterinit linkname
# predates Go 1.18's signature; built with Debian bookworm's Go 1.19, the API server
# segfaults (aeshashbody in json-iterator's map encoder) on the first create of any custom
# resource. reflect2 v1.0.2 fixed it; this applies the same change to the vendored copy
# and rebuilds the three binaries once (marker: bin/.reflect2-go118).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SCRIPTS=${K8S_TESTBED_SCRIPTS:-$HERE/../../../shared/k8s-testbed}
W=${K8S_TESTBED_DIR:-$HOME/.cache/k8s-testbed}
export K8S_TESTBED_DIR=$W
[ -f "$W/bin/.reflect2-go118" ] && { echo "[k8s-testbed] patched binaries present in $W/bin"; exit 0; }
bash "$SCRIPTS/build-k8s.sh"
t0=$(date +%s)
SRC=$(ls -d "$W"/kubernetes-*/ | head -1); SRC=${SRC%/}
R=$SRC/vendor/github.com/modern-go/reflect2
if ! grep -q "m unsafe.Pointer, it \*hiter)" "$R/unsafe_link.go"; then
  python3 - "$R" <<'PY'
import sys, pathlib
r = pathlib.Path(sys.argv[1])
link = r / "unsafe_link.go"
s = link.read_text()
s = s.replace("func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter",
              "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)")
old = s[s.index("type hiter struct {"):s.index("}", s.index("type hiter struct {")) + 1]
s = s.replace(old, """type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}""")
link.write_text(s)
m = r / "unsafe_map.go"
s = m.read_text()
s = s.replace("""	return &UnsafeMapIterator{
		hiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),""", """	var it hiter
	mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)
	return &UnsafeMapIterator{
		hiter:      &it,""")
m.write_text(s)
PY
fi
export GOCACHE="$W/gocache" GOPATH="$W/gopath" GO111MODULE=off CGO_ENABLED=0
cd "$GOPATH/src/k8s.io/kubernetes"
V=k8s.io/kubernetes/vendor/k8s.io/component-base/version; C=k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version
LDF="-s -w"; for p in $V $C; do LDF="$LDF -X $p.gitVersion=v1.20.2 -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean"; done
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  s=$(date +%s)
  go build -tags selinux,notest -ldflags "$LDF" -o "$W/bin/$c.new" ./cmd/$c
  mv "$W/bin/$c.new" "$W/bin/$c"
  echo "[go build $c, reflect2 patched] $(( $(date +%s) - s ))s"
done
touch "$W/bin/.reflect2-go118"
echo "[reflect2 patch + rebuild] $(( $(date +%s) - t0 ))s"
