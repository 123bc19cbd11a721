{{/*
The release's full name, used for every object the chart names: the release name when it
already contains the chart's name, else "<release>-<chart>".
*/}}
{{- define "session-operator.fullname" -}}
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

{{- define "session-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name is always "session-operator", whatever
nameOverride says: the NetworkPolicy the operator puts in front of each store admits the
operator's pods by that label.
*/}}
{{- define "session-operator.selectorLabels" -}}
app.kubernetes.io/name: session-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "session-operator.labels" -}}
{{ include "session-operator.selectorLabels" . }}
app.kubernetes.io/part-of: session-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "session-operator.chart" . }}
{{- end -}}

{{- define "session-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "session-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "session-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Refuses combinations values.schema.json cannot express. */}}
{{- define "session-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled: true, or two managers would reconcile at once" -}}
{{- end -}}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) -}}
{{- fail "metrics.port and health.port must differ" -}}
{{- end -}}
{{- range $k := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" -}}
{{- if hasKey $.Values.podLabels $k -}}
{{- fail (printf "podLabels must not set %s: the chart's selectors and the stores' NetworkPolicies rely on it" $k) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes through the metrics Service" -}}
{{- end -}}
{{- end -}}
