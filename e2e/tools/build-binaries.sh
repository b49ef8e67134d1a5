#!/usr/bin/env bash
# Finds or builds the binaries of the local testbed: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, kube-proxy, crictl, coredns, etcd, helm and promtool, at the versions
# pinned in e2e/versions.env.
#
# usage: build-binaries.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${KVROCKS_TESTBED_CACHE:-$HOME/.cache/kvrocks-operator-testbed}/<KUBERNETES_VERSION>
#
# Lookup order for each binary:
#   1. $KUBEBUILDER_ASSETS/<name>, when set and executable (envtest convention; such a directory
#      usually only has kube-apiserver, etcd and kubectl, the others fall through);
#   2. CACHE_DIR/<name>, when it reports the pinned version;
#   3. otherwise it is built from its Go module with the machine's Go (module proxy only, no
#      release tarballs) into CACHE_DIR.
# A second run finds everything in the cache and builds nothing. Builds run one at a time.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
versions_file="${script_dir}/../versions.env"
# shellcheck source=../versions.env
source "${versions_file}"
: "${KUBERNETES_VERSION:?not set in ${versions_file}}"
: "${ETCD_VERSION:?not set in ${versions_file}}"
: "${HELM_VERSION:?not set in ${versions_file}}"
: "${PROMETHEUS_OPERATOR_VERSION:?not set in ${versions_file}}"
: "${PROMETHEUS_VERSION:?not set in ${versions_file}}"
: "${CRI_TOOLS_VERSION:?not set in ${versions_file}}"
: "${COREDNS_VERSION:?not set in ${versions_file}}"

if [[ $# -gt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    echo "usage: $(basename "$0") [CACHE_DIR]" >&2
    exit 2
fi
cache_dir="${1:-${KVROCKS_TESTBED_CACHE:-$HOME/.cache/kvrocks-operator-testbed}/${KUBERNETES_VERSION}}"
mkdir -p "${cache_dir}"
cache_dir="$(cd "${cache_dir}" && pwd)"

log() { printf '%s\n' "$*"; }
die() { printf 'build-binaries: error: %s\n' "$*" >&2; exit 1; }

# Kubernetes version parts: v1.37.1 -> major 1, minor 37, patch 1; staging modules are v0.37.1.
[[ ${KUBERNETES_VERSION} =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] \
    || die "KUBERNETES_VERSION must look like v1.37.1, got ${KUBERNETES_VERSION}"
kube_major="${BASH_REMATCH[1]}"
kube_minor="${BASH_REMATCH[2]}"
kube_patch="${BASH_REMATCH[3]}"
staging_version="v0.${kube_minor}.${kube_patch}"

# One build at a time per cache dir (two test runs may start together).
exec 9>"${cache_dir}/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

work_dir=""
cleanup() {
    if [[ -n ${work_dir} && -d ${work_dir} ]]; then
        rm -rf "${work_dir}"
    fi
    rm -f "${cache_dir}"/.*.partial.$$
    return 0
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Version probes: print the version a binary reports, empty if it cannot tell.

reported_version() {
    local name="$1" path="$2" out=""
    case "${name}" in
        kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
            # "Kubernetes v1.37.1"
            out="$(timeout 30 "${path}" --version 2>/dev/null | sed -n 's/^Kubernetes \(v[^ ]*\).*/\1/p' | head -n1)" || true
            ;;
        kubectl)
            # "Client Version: v1.37.1"
            out="$(timeout 30 "${path}" version --client 2>/dev/null | sed -n 's/^Client Version: \(v[^ ]*\).*/\1/p' | head -n1)" || true
            ;;
        etcd)
            # "etcd Version: 3.6.16"
            out="$(timeout 30 "${path}" --version 2>/dev/null | sed -n 's/^etcd Version: \([^ ]*\).*/v\1/p' | head -n1)" || true
            ;;
        helm)
            out="$(timeout 30 "${path}" version --template '{{.Version}}' 2>/dev/null | head -n1)" || true
            ;;
        coredns)
            # "CoreDNS-1.15.0"
            out="$(timeout 30 "${path}" -version 2>/dev/null | sed -n 's/^CoreDNS-\([^ ]*\).*/v\1/p' | head -n1)" || true
            ;;
        crictl)
            # "crictl version v1.37.0"
            out="$(timeout 30 "${path}" --version 2>/dev/null | sed -n 's/^crictl version \(v[^ ]*\).*/\1/p' | head -n1)" || true
            ;;
        promtool)
            # "promtool, version v0.313.5 (branch: ..."
            out="$(timeout 30 "${path}" --version 2>/dev/null | sed -n 's/^promtool, version \([^ ]*\).*/\1/p' | head -n1)" || true
            ;;
    esac
    printf '%s' "${out}"
}

pinned_version() {
    case "$1" in
        etcd) printf '%s' "${ETCD_VERSION}" ;;
        helm) printf '%s' "${HELM_VERSION}" ;;
        promtool) printf '%s' "${PROMETHEUS_VERSION}" ;;
        crictl) printf '%s' "${CRI_TOOLS_VERSION}" ;;
        coredns) printf '%s' "${COREDNS_VERSION}" ;;
        *) printf '%s' "${KUBERNETES_VERSION}" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Go environment: the machine's Go, module proxy, persistent default GOPATH/GOMODCACHE/GOCACHE.

go_ready=""
prepare_go() {
    [[ -n ${go_ready} ]] && return 0
    command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go to build the testbed binaries"
    export GOFLAGS="-mod=mod -buildvcs=false"
    export CGO_ENABLED=0
    export GOTOOLCHAIN=local
    unset GOOS GOARCH GOWORK
    export GOWORK=off
    work_dir="$(mktemp -d "${TMPDIR:-/tmp}/kvrocks-testbed-build.XXXXXX")"
    go_ready=1
}

go_local_version() { go env GOVERSION | sed 's/^go//'; }

# version_gt A B: A > B for Go versions such as 1.26.0, 1.26, 1.27rc1 (rc sorts low enough here).
version_gt() { [[ $1 != "$2" && "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n1)" == "$1" ]]; }

# Chooses GOTOOLCHAIN for a module that says `go <required>`: local when the machine's Go is new
# enough, else the required toolchain (downloaded through the module proxy), which is reported.
select_toolchain() {
    local required="$1" local_version
    local_version="$(go_local_version)"
    if version_gt "${required}" "${local_version}"; then
        [[ ${required} =~ ^[0-9]+\.[0-9]+$ ]] && required="${required}.0"
        log "note: the module needs go ${required}, the machine has go ${local_version}: using GOTOOLCHAIN=go${required} (fetched through the module proxy)"
        export GOTOOLCHAIN="go${required}"
    else
        export GOTOOLCHAIN=local
    fi
}

# module_info MODULE VERSION FIELD: FIELD is gomod, time, commit or go.
module_info() {
    local format
    case "$3" in
        gomod) format='{{.GoMod}}' ;;
        time) format='{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' ;;
        commit) format='{{with .Origin}}{{.Hash}}{{end}}' ;;
        go) format='{{.GoVersion}}' ;;
    esac
    (cd "${work_dir}" && GOTOOLCHAIN=local go list -m -f "${format}" "$1@$2")
}

# go_build DIR NAME VERSION PACKAGE LDFLAGS [extra go build args...]
go_build() {
    local dir="$1" name="$2" version="$3" package="$4" ldflags="$5"
    shift 5
    local tmp_out="${cache_dir}/.${name}.partial.$$"
    local build_log="${work_dir}/${name}.log"
    local start end got
    printf 'building %s %s from Go modules ... ' "${name}" "${version}"
    start=$(date +%s)
    if ! (cd "${dir}" && go build -trimpath "$@" -ldflags "${ldflags}" -o "${tmp_out}" "${package}") >"${build_log}" 2>&1; then
        printf 'FAILED\n'
        rm -f "${tmp_out}"
        cp "${build_log}" "${cache_dir}/build-${name}.log" 2>/dev/null || true
        tail -n 40 "${build_log}" >&2
        die "go build ${package} failed (full log: ${cache_dir}/build-${name}.log)"
    fi
    end=$(date +%s)
    printf '%d s\n' "$((end - start))"
    got="$(reported_version "${name}" "${tmp_out}")"
    if [[ ${got} != "${version}" ]]; then
        rm -f "${tmp_out}"
        die "freshly built ${name} reports version '${got}', expected ${version}"
    fi
    mv -f "${tmp_out}" "${cache_dir}/${name}"
    rm -f "${cache_dir}/build-${name}.log"
}

# ---------------------------------------------------------------------------------------------
# Kubernetes: a temporary module that requires k8s.io/kubernetes and points every k8s.io staging
# module it requires (replaced by ./staging/src/... in its own go.mod) at the matching v0.x.y.

kube_dir=""
kube_ldflags=""
prepare_kubernetes_module() {
    [[ -n ${kube_dir} ]] && return 0
    kube_dir="${work_dir}/kubernetes"
    mkdir -p "${kube_dir}"
    local gomod go_version commit build_date staging
    gomod="$(module_info k8s.io/kubernetes "${KUBERNETES_VERSION}" gomod)"
    go_version="$(module_info k8s.io/kubernetes "${KUBERNETES_VERSION}" go)"
    commit="$(module_info k8s.io/kubernetes "${KUBERNETES_VERSION}" commit)"
    build_date="$(module_info k8s.io/kubernetes "${KUBERNETES_VERSION}" time)"
    [[ -f ${gomod} ]] || die "k8s.io/kubernetes ${KUBERNETES_VERSION}: go.mod not found on the module proxy"
    select_toolchain "${go_version}"
    # The staging modules: `k8s.io/x => ./staging/src/k8s.io/x` in k8s.io/kubernetes' go.mod,
    # kept when the module is in its require block (the others, e.g. sample-controller, are not
    # in the module graph and need no replacement).
    staging="$(awk '
        /^require[ \t]*\(/ { inreq = 1; next }
        /^replace[ \t]*\(/ { inrep = 1; next }
        /^\)/ { inreq = 0; inrep = 0; next }
        inreq && $1 ~ /^k8s\.io\// { required[$1] = 1 }
        inrep && $2 == "=>" && $3 ~ /^\.\/staging\/src\// { staged[$1] = 1 }
        END { for (m in staged) if (m in required) print m }
    ' "${gomod}" | sort)"
    [[ -n ${staging} ]] || die "no staging modules found in ${gomod}"
    {
        printf 'module kvrocks-operator.local/testbed-kubernetes\n\n'
        printf 'go %s\n\n' "${go_version}"
        printf 'require k8s.io/kubernetes %s\n\n' "${KUBERNETES_VERSION}"
        printf 'replace (\n'
        local m
        for m in ${staging}; do
            printf '\t%s => %s %s\n' "${m}" "${m}" "${staging_version}"
        done
        printf ')\n'
    } >"${kube_dir}/go.mod"
    # The same version variables as Kubernetes' hack/lib/version.sh sets, for both packages.
    local pkg
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        kube_ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION}"
        kube_ldflags+=" -X ${pkg}.gitMajor=${kube_major}"
        kube_ldflags+=" -X ${pkg}.gitMinor=${kube_minor}"
        kube_ldflags+=" -X ${pkg}.gitCommit=${commit}"
        kube_ldflags+=" -X ${pkg}.gitTreeState=clean"
        kube_ldflags+=" -X ${pkg}.buildDate=${build_date}"
    done
    kube_ldflags="-s -w${kube_ldflags}"
}

build_kubernetes_binary() {
    local name="$1"
    prepare_go
    prepare_kubernetes_module
    # Tags as in Kubernetes' own non-debug builds (hack/lib/golang.sh).
    go_build "${kube_dir}" "${name}" "${KUBERNETES_VERSION}" "k8s.io/kubernetes/cmd/${name}" \
        "${kube_ldflags}" -tags=selinux,notest,grpcnotrace
}

# ---------------------------------------------------------------------------------------------
# etcd: the server's main package is the root of go.etcd.io/etcd/server/v3.

build_etcd() {
    prepare_go
    local dir="${work_dir}/etcd" go_version commit
    mkdir -p "${dir}"
    go_version="$(module_info go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" go)"
    commit="$(module_info go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" commit)"
    select_toolchain "${go_version}"
    printf 'module kvrocks-operator.local/testbed-etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
        "${go_version}" "${ETCD_VERSION}" >"${dir}/go.mod"
    local ldflags="-s -w"
    if [[ -n ${commit} ]]; then
        ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${commit:0:7}"
    else
        ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=gomodule-${ETCD_VERSION}"
    fi
    go_build "${dir}" etcd "${ETCD_VERSION}" go.etcd.io/etcd/server/v3 "${ldflags}"
}

# ---------------------------------------------------------------------------------------------
# helm: helm.sh/helm/v3/cmd/helm with the ldflags of Helm's Makefile.

build_helm() {
    prepare_go
    local dir="${work_dir}/helm" go_version commit client_go k8s_major k8s_minor
    mkdir -p "${dir}"
    go_version="$(module_info helm.sh/helm/v3 "${HELM_VERSION}" go)"
    commit="$(module_info helm.sh/helm/v3 "${HELM_VERSION}" commit)"
    select_toolchain "${go_version}"
    printf 'module kvrocks-operator.local/testbed-helm\n\ngo %s\n\nrequire helm.sh/helm/v3 %s\n' \
        "${go_version}" "${HELM_VERSION}" >"${dir}/go.mod"
    # Helm's Makefile derives the Kubernetes version it lints against from its client-go.
    client_go="$(cd "${dir}" && go list -m -f '{{.Version}}' k8s.io/client-go)"
    [[ ${client_go} =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected k8s.io/client-go version ${client_go}"
    k8s_major=$((BASH_REMATCH[1] + 1))
    k8s_minor="${BASH_REMATCH[2]}"
    local v=helm.sh/helm/v3/internal/version
    local ldflags="-s -w -X ${v}.version=${HELM_VERSION} -X ${v}.gitTreeState=clean"
    [[ -n ${commit} ]] && ldflags+=" -X ${v}.gitCommit=${commit}"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${k8s_major}"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${k8s_major}"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
    go_build "${dir}" helm "${HELM_VERSION}" helm.sh/helm/v3/cmd/helm "${ldflags}"
}

# ---------------------------------------------------------------------------------------------
# promtool: github.com/prometheus/prometheus/cmd/promtool (the slowest build here: a few minutes).

build_promtool() {
    prepare_go
    local dir="${work_dir}/promtool" go_version
    mkdir -p "${dir}"
    go_version="$(module_info github.com/prometheus/prometheus "${PROMETHEUS_VERSION}" go)"
    select_toolchain "${go_version}"
    printf 'module kvrocks-operator.local/testbed-promtool\n\ngo %s\n\nrequire github.com/prometheus/prometheus %s\n' \
        "${go_version}" "${PROMETHEUS_VERSION}" >"${dir}/go.mod"
    local ldflags="-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}"
    go_build "${dir}" promtool "${PROMETHEUS_VERSION}" github.com/prometheus/prometheus/cmd/promtool "${ldflags}"
}

# ---------------------------------------------------------------------------------------------
# crictl: sigs.k8s.io/cri-tools/cmd/crictl, the CRI client the testbed's real nodes are driven
# with (pods listed, inspected and removed on each node's containerd).

build_crictl() {
    prepare_go
    local dir="${work_dir}/crictl" go_version
    mkdir -p "${dir}"
    go_version="$(module_info sigs.k8s.io/cri-tools "${CRI_TOOLS_VERSION}" go)"
    select_toolchain "${go_version}"
    printf 'module kvrocks-operator.local/testbed-crictl\n\ngo %s\n\nrequire sigs.k8s.io/cri-tools %s\n' \
        "${go_version}" "${CRI_TOOLS_VERSION}" >"${dir}/go.mod"
    local ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION}"
    go_build "${dir}" crictl "${CRI_TOOLS_VERSION}" sigs.k8s.io/cri-tools/cmd/crictl "${ldflags}"
}

# ---------------------------------------------------------------------------------------------
# coredns: the cluster DNS of the testbed's real nodes (github.com/coredns/coredns, main package
# at the module root, its default plugin set).

build_coredns() {
    prepare_go
    local dir="${work_dir}/coredns" go_version
    mkdir -p "${dir}"
    go_version="$(module_info github.com/coredns/coredns "${COREDNS_VERSION}" go)"
    select_toolchain "${go_version}"
    printf 'module kvrocks-operator.local/testbed-coredns\n\ngo %s\n\nrequire github.com/coredns/coredns %s\n' \
        "${go_version}" "${COREDNS_VERSION}" >"${dir}/go.mod"
    go_build "${dir}" coredns "${COREDNS_VERSION}" github.com/coredns/coredns "-s -w"
}

# ---------------------------------------------------------------------------------------------

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy crictl coredns etcd helm promtool)
declare -A resolved source_of

log "testbed binaries: Kubernetes ${KUBERNETES_VERSION}, etcd ${ETCD_VERSION}, helm ${HELM_VERSION}, promtool ${PROMETHEUS_VERSION}"
log "cache dir: ${cache_dir}"

total_start=$(date +%s)
built=0
for name in "${binaries[@]}"; do
    want="$(pinned_version "${name}")"
    if [[ -n ${KUBEBUILDER_ASSETS:-} && -f ${KUBEBUILDER_ASSETS}/${name} && -x ${KUBEBUILDER_ASSETS}/${name} ]]; then
        resolved[${name}]="${KUBEBUILDER_ASSETS}/${name}"
        source_of[${name}]="KUBEBUILDER_ASSETS"
        got="$(reported_version "${name}" "${resolved[${name}]}")"
        if [[ ${got} != "${want}" ]]; then
            log "warning: ${resolved[${name}]} reports '${got}', pinned is ${want}; using it anyway (KUBEBUILDER_ASSETS)"
        fi
        continue
    fi
    cached="${cache_dir}/${name}"
    if [[ -f ${cached} && -x ${cached} ]]; then
        got="$(reported_version "${name}" "${cached}")"
        if [[ ${got} == "${want}" ]]; then
            resolved[${name}]="${cached}"
            source_of[${name}]="cache"
            continue
        fi
        log "${cached} reports '${got}', pinned is ${want}: rebuilding"
    fi
    case "${name}" in
        etcd) build_etcd ;;
        helm) build_helm ;;
        promtool) build_promtool ;;
        crictl) build_crictl ;;
        coredns) build_coredns ;;
        *) build_kubernetes_binary "${name}" ;;
    esac
    built=$((built + 1))
    resolved[${name}]="${cached}"
    source_of[${name}]="built"
done

# The CRDs of prometheus-operator's ServiceMonitor, PodMonitor and PrometheusRule, copied from its
# module zip into CACHE_DIR/monitoring-crds-<version>/.
monitoring_kinds=(servicemonitors podmonitors prometheusrules)
monitoring_dir="${cache_dir}/monitoring-crds-${PROMETHEUS_OPERATOR_VERSION}"
monitoring_source="cache"
if [[ ! -f ${monitoring_dir}/.complete ]]; then
    prepare_go
    log "fetching the prometheus-operator ${PROMETHEUS_OPERATOR_VERSION} CRDs from its Go module"
    module_dir="$(cd "${work_dir}" && GOTOOLCHAIN=local go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n ${module_dir} && -d ${module_dir} ]] || die "go mod download gave no directory for prometheus-operator"
    rm -rf "${monitoring_dir}"
    mkdir -p "${monitoring_dir}"
    for kind in "${monitoring_kinds[@]}"; do
        file="${module_dir}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml"
        [[ -f ${file} ]] || die "${file} is not in the module"
        cp "${file}" "${monitoring_dir}/"
        chmod u+w "${monitoring_dir}/monitoring.coreos.com_${kind}.yaml"
    done
    touch "${monitoring_dir}/.complete"
    monitoring_source="fetched"
fi
total_end=$(date +%s)

for name in "${binaries[@]}"; do
    printf '  %-24s %-18s %s\n' "${name}" "${source_of[${name}]}" "${resolved[${name}]}"
done
printf '  %-24s %-18s %s\n' "monitoring-crds" "${monitoring_source}" "${monitoring_dir}"
if [[ ${built} -eq 0 ]]; then
    log "nothing to build ($((total_end - total_start)) s)"
else
    log "built ${built} binaries in $((total_end - total_start)) s"
fi
log "cache dir: ${cache_dir}"
