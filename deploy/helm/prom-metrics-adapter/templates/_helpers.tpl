{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "pma.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's objects: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>"; at most 63 characters.
*/}}
{{- define "pma.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Namespace of the namespaced objects.
*/}}
{{- define "pma.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{/*
Labels that select the adapter's pods.
*/}}
{{- define "pma.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels on every object.
*/}}
{{- define "pma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pma.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: metrics-adapter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.customLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata.labels and, when customAnnotations is set, metadata.annotations of an object,
for inclusion with nindent 2 under `metadata:`.
*/}}
{{- define "pma.metadata" -}}
labels:
  {{- include "pma.labels" . | nindent 2 }}
{{- with .Values.customAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The service account the pods run as.
*/}}
{{- define "pma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pma.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Whether each API is served, hence gets an APIService: "true" or "". apiServices.<api> overrides
what the rules imply when it is not null.
*/}}
{{- define "pma.serves.custom" -}}
{{- if kindIs "invalid" .Values.apiServices.custom -}}
{{- if or .Values.rules.default .Values.rules.custom }}true{{ end -}}
{{- else if .Values.apiServices.custom }}true{{ end -}}
{{- end -}}

{{- define "pma.serves.external" -}}
{{- if kindIs "invalid" .Values.apiServices.external -}}
{{- if or .Values.rules.external .Values.rules.schedules .Values.externalMetricsFallback.url }}true{{ end -}}
{{- else if .Values.apiServices.external }}true{{ end -}}
{{- end -}}

{{- define "pma.serves.resource" -}}
{{- if kindIs "invalid" .Values.apiServices.resource -}}
{{- if .Values.rules.resource }}true{{ end -}}
{{- else if .Values.apiServices.resource }}true{{ end -}}
{{- end -}}

{{/*
Whether the adapter serves a certificate the aggregator can verify (else insecureSkipTLSVerify).
*/}}
{{- define "pma.verifiedTLS" -}}
{{- if or .Values.tls.enable .Values.certManager.enabled }}true{{ end -}}
{{- end -}}

{{/*
One APIService. Arguments: a dict with "root" (the chart context), "group", "version" and
"priority".
*/}}
{{- define "pma.apiService" -}}
{{- $root := .root -}}
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: {{ .version }}.{{ .group }}
  labels:
    {{- include "pma.labels" $root | nindent 4 }}
  {{- if or $root.Values.certManager.enabled $root.Values.customAnnotations }}
  annotations:
    {{- if $root.Values.certManager.enabled }}
    cert-manager.io/inject-ca-from: {{ printf "%s/%s-root-cert" (include "pma.namespace" $root) (include "pma.fullname" $root) | quote }}
    {{- end }}
    {{- with $root.Values.customAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  group: {{ .group }}
  version: {{ .version }}
  service:
    name: {{ include "pma.fullname" $root }}
    namespace: {{ include "pma.namespace" $root }}
    port: {{ $root.Values.service.port }}
  {{- if $root.Values.tls.enable }}
  caBundle: {{ required "tls.ca is required when tls.enable is true" $root.Values.tls.ca | b64enc }}
  {{- end }}
  {{- /* Otherwise no caBundle field at all: cert-manager injects it, or the adapter keeps it
  (pma.selfManagedCert). An empty one here would blank the live bundle on every upgrade. */}}
  groupPriorityMinimum: 100
  versionPriority: {{ .priority }}
{{- end -}}


{{/*
Whether the adapter manages its own serving certificate (the default): neither a certificate of
the user's (tls.enable) nor cert-manager's.
*/}}
{{- define "pma.selfManagedCert" -}}
{{- if not (or .Values.tls.enable .Values.certManager.enabled) }}true{{ end -}}
{{- end -}}

{{/*
The Secret the adapter keeps its serving CA and certificate in.
*/}}
{{- define "pma.servingCertSecret" -}}
{{- printf "%s-serving-cert" (include "pma.fullname" .) -}}
{{- end -}}

{{/*
The names of the APIServices this release registers, as a list.
*/}}
{{- define "pma.apiServiceNames" -}}
{{- $names := list -}}
{{- if include "pma.serves.custom" . }}
{{- $names = append $names "v1beta1.custom.metrics.k8s.io" }}
{{- $names = append $names "v1beta2.custom.metrics.k8s.io" }}
{{- end }}
{{- if include "pma.serves.external" . }}
{{- $names = append $names "v1beta1.external.metrics.k8s.io" }}
{{- end }}
{{- if include "pma.serves.resource" . }}
{{- $names = append $names "v1beta1.metrics.k8s.io" }}
{{- end }}
{{- toJson $names -}}
{{- end -}}
