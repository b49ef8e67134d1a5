{{/* Chart name, truncated to 63 characters. */}}
{{- define "kvrocks-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, or release-chart when the release name lacks the chart name. */}}
{{- define "kvrocks-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kvrocks-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "kvrocks-operator.labels" -}}
helm.sh/chart: {{ include "kvrocks-operator.chart" . }}
{{ include "kvrocks-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kvrocks-operator
{{- end }}

{{/* Labels that select the operator's pods (never `managed-by=kvrocks-operator`: that marks data pods). */}}
{{- define "kvrocks-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvrocks-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kvrocks-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kvrocks-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kvrocks-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The rules of config/rbac/role.yaml except leader election: what the operator needs wherever it
watches. Keep both in step with config/rbac/role.yaml (no wildcards).
*/}}
{{- define "kvrocks-operator.rules" -}}
# The three custom resources: watched, finalized (a patch), their status patched; read by
# name only where the cache may be stale: a cluster before each pass (its migration record),
# a sentinel group when a Standard or Cluster that names it goes. `update` on finalizers is what
# the OwnerReferencesPermissionEnforcement admission plugin asks of a blockOwnerDeletion owner.
- apiGroups: ["kvrocks.io"]
  resources: ["kvrockssentinels", "kvrocksstandards", "kvrocksclusters"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["kvrocks.io"]
  resources: ["kvrockssentinels", "kvrocksclusters"]
  verbs: ["get"]
- apiGroups: ["kvrocks.io"]
  resources: ["kvrockssentinels/status", "kvrocksstandards/status", "kvrocksclusters/status"]
  verbs: ["patch"]
- apiGroups: ["kvrocks.io"]
  resources: ["kvrockssentinels/finalizers", "kvrocksstandards/finalizers", "kvrocksclusters/finalizers"]
  verbs: ["update"]
# The workloads it builds, created and changed by server-side apply (a patch, which the
# apiserver also authorizes as create when the object does not exist yet); a cluster's
# StatefulSets, Services and PodDisruptionBudgets of a shard scaled away are listed and deleted.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
# Secrets: read by name (a named one only when labelled kvrocks.io/auth=true), the generated
# password Secret and the record of the password in effect created and patched; never listed,
# watched or deleted (owned ones go with their resource through garbage collection).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Pods: listed for state and IPs, the role label kept true, a pod deleted to roll or stop it.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch", "delete"]
# A cluster created over kept claims: the topology each node persisted, from its log.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Claims are grown when storage.size grows (read by name, then patched); the StatefulSet
# controller deletes them when the spec asks for it, never the operator.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "patch"]
# Whether a claim's StorageClass allows it to grow (cluster-scoped: ignored in a Role).
- apiGroups: ["storage.k8s.io"]
  resources: ["storageclasses"]
  verbs: ["get"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Leader election: the last rule of config/rbac/role.yaml. */}}
{{- define "kvrocks-operator.leaseRules" -}}
# Leader election.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end }}

{{- define "kvrocks-operator.testNamespace" -}}
{{- default .Release.Namespace .Values.test.namespace }}
{{- end }}
