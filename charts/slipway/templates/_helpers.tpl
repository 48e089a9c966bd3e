{{/* Names and labels shared by every template. */}}
{{- define "slipway.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "slipway.namespace" -}}
{{- default .Release.Namespace .Values.targetNamespace -}}
{{- end -}}

{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "slipway.labels" -}}
{{ include "slipway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "slipway.registrySecret" -}}
{{- default (printf "%s-registry" (include "slipway.fullname" .)) .Values.registry.existingSecret -}}
{{- end -}}

{{- define "slipway.keysSecret" -}}
{{- default (printf "%s-keys" (include "slipway.fullname" .)) .Values.signingKeys.existingSecret -}}
{{- end -}}

{{- define "slipway.metadataHost" -}}
{{- printf "%s-metadata.%s.svc" (include "slipway.fullname" .) .Release.Namespace -}}
{{- end -}}
