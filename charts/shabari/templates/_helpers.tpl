{{/* Name of the chart, overridable. */}}
{{- define "shabari.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified prefix of every resource name. */}}
{{- define "shabari.fullname" -}}
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

{{/* Labels on every resource. */}}
{{- define "shabari.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "shabari.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shabari
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "gateway"). */}}
{{- define "shabari.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shabari.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Resource name of one component. */}}
{{- define "shabari.componentName" -}}
{{- printf "%s-%s" (include "shabari.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The image reference. */}}
{{- define "shabari.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Whether the gateway runs as replicas that elect a learner (more than one replica). */}}
{{- define "shabari.gatewayReplicated" -}}
{{- if gt (int .Values.gateway.replicas) 1 }}true{{ end }}
{{- end }}

{{/* Name of the gateway replicas' learner Lease. */}}
{{- define "shabari.learnerLease" -}}
{{- .Values.gateway.replication.leaseName | default (printf "%s-learner" (include "shabari.componentName" (dict "root" . "component" "gateway"))) }}
{{- end }}

{{/* Secret holding the gateway's bearer token (gateway.auth). */}}
{{- define "shabari.gatewayAuthSecret" -}}
{{- .Values.gateway.auth.existingSecret | default (printf "%s-auth" (include "shabari.componentName" (dict "root" . "component" "gateway"))) }}
{{- end }}

{{/* Claim holding the gateway's state dir (gateway.persistence). */}}
{{- define "shabari.gatewayStateClaim" -}}
{{- .Values.gateway.persistence.existingClaim | default (printf "%s-state" (include "shabari.componentName" (dict "root" . "component" "gateway"))) }}
{{- end }}
