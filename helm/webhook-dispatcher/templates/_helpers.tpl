{{/* The app name: also the Prometheus job label the alerts select. */}}
{{- define "wd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "wd.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "wd.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dispatcher
{{- end -}}

{{- define "wd.labels" -}}
{{ include "wd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "wd.secretName" -}}
{{- default (include "wd.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "wd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The TriggerAuthentication the ScaledObject references, if any. */}}
{{- define "wd.kedaAuthName" -}}
{{- with .Values.autoscaling.triggerAuthentication -}}
{{- if .existingName -}}
{{- .existingName -}}
{{- else if .create -}}
{{- printf "%s-kafka" (include "wd.fullname" $) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
One alerting rule, from a dict: root (the chart context), name, expr, summary, description.
Severity, `for`, enabled come from monitoring.prometheusRule.rules.<name>. In summary and
description, [[ ]] stands for Prometheus's own {{ }} (kept out of Helm's way).
*/}}
{{- define "wd.alert" -}}
{{- $values := .root.Values.monitoring.prometheusRule -}}
{{- $cfg := index $values.rules .name -}}
{{- if $cfg.enabled -}}
{{- $labels := merge (dict "severity" $cfg.severity) (deepCopy $values.additionalRuleLabels) -}}
{{- $text := dict
  "summary" (.summary | replace "[[" "{{" | replace "]]" "}}")
  "description" (.description | replace "[[" "{{" | replace "]]" "}}")
  "runbook_url" (printf "%s#%s" $values.runbookBaseUrl (lower .name)) -}}
{{- $rule := dict "alert" .name "expr" .expr "for" $cfg.for "labels" $labels "annotations" $text -}}
- {{ toYaml $rule | nindent 2 | trim }}
{{- end -}}
{{- end -}}
