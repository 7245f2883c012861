{{/* The base name of every object: the release name unless overridden. */}}
{{- define "dcr-gateway.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "dcr-gateway.name" -}}
{{- default "keycloak" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Pod selector labels. */}}
{{- define "dcr-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dcr-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of an object; pass (list . "component"). */}}
{{- define "dcr-gateway.labels" -}}
{{- $top := index . 0 -}}
{{ include "dcr-gateway.selectorLabels" $top }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/managed-by: {{ $top.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $top.Chart.Name $top.Chart.Version }}
{{- end -}}

{{/* Keycloak's preStop sleep: it serves until the gateway has drained. */}}
{{- define "dcr-gateway.keycloakPreStopSeconds" -}}
{{- add .Values.gateway.drainDelaySeconds .Values.gateway.shutdownGraceSeconds -}}
{{- end -}}

{{/* The pod's grace period: Keycloak's preStop, then Keycloak's own stop, and 4 s to spare. */}}
{{- define "dcr-gateway.terminationGracePeriodSeconds" -}}
{{- add (include "dcr-gateway.keycloakPreStopSeconds" . | int) .Values.keycloak.shutdownDelaySeconds .Values.keycloak.shutdownTimeoutSeconds 4 -}}
{{- end -}}
