{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already carries it. */}}
{{- define "switchboard.fullname" -}}
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

{{- define "switchboard.redisName" -}}
{{- printf "%s-redis" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Service of the internal port (metrics, status). */}}
{{- define "switchboard.internalName" -}}
{{- printf "%s-internal" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The container port that serves /metrics and the probes. */}}
{{- define "switchboard.metricsPort" -}}
{{- if .Values.internalListener.enabled }}internal{{ else }}http{{ end }}
{{- end }}

{{/* Prometheus's labels of the scraped server pods (namespace and job, the
job being the scraped Service's name). */}}
{{- define "switchboard.promSelector" -}}
namespace="{{ .Release.Namespace }}",job="{{ if .Values.internalListener.enabled }}{{ include "switchboard.internalName" . }}{{ else }}{{ include "switchboard.fullname" . }}{{ end }}"
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "switchboard.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchboard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret holding the bundled Redis password, and its key. */}}
{{- define "switchboard.redisSecretName" -}}
{{- default (include "switchboard.redisName" .) .Values.redis.auth.existingSecret }}
{{- end }}
{{- define "switchboard.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}redis-password{{ end }}
{{- end }}

{{/* Secret holding the external Redis URL, and its key. */}}
{{- define "switchboard.redisUrlSecretName" -}}
{{- default (printf "%s-redis-url" (include "switchboard.fullname" .)) .Values.externalRedis.existingSecret }}
{{- end }}
{{- define "switchboard.redisUrlSecretKey" -}}
{{- if .Values.externalRedis.existingSecret }}{{ .Values.externalRedis.existingSecretUrlKey }}{{ else }}url{{ end }}
{{- end }}

{{/* Does the chart create a Secret for the inline server secrets? */}}
{{- define "switchboard.inlineSecrets" -}}
{{- if and (not .Values.secrets.existingSecret) (or .Values.secrets.jwtSecret .Values.secrets.adminToken .Values.secrets.turnSecret) }}true{{ end }}
{{- end }}

{{/*
Cross-field rules JSON Schema cannot express; each fails with a message that
names the values to change.
*/}}
{{- define "switchboard.validate" -}}
{{- $c := .Values.config }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) (int $c.drainTimeoutSeconds)) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than preStopSleepSeconds (%d) + config.drainTimeoutSeconds (%d), or Kubernetes kills draining pods" (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) (int $c.drainTimeoutSeconds)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) }}
{{- fail "externalRedis is set but redis.enabled is true (the bundled Redis): set redis.enabled=false to use the external Redis, or clear externalRedis.url and externalRedis.existingSecret" }}
{{- end }}
{{- if and $c.turnUrls (not (or .Values.secrets.turnSecret .Values.secrets.existingSecret)) }}
{{- fail "config.turnUrls needs a TURN secret: set secrets.turnSecret, or secrets.existingSecret with a TURN_SECRET key" }}
{{- end }}
{{- $keySources := 0 }}
{{- if .Values.secrets.jwtSecret }}{{ $keySources = add1 $keySources }}{{ end }}
{{- if and .Values.jwtKeys.existingSecret .Values.jwtKeys.publicKeyKey }}{{ $keySources = add1 $keySources }}{{ end }}
{{- if and .Values.jwtKeys.existingSecret .Values.jwtKeys.jwksKey }}{{ $keySources = add1 $keySources }}{{ end }}
{{- if gt $keySources 1 }}
{{- fail "the server takes exactly one JWT key source: set only one of secrets.jwtSecret, jwtKeys.publicKeyKey and jwtKeys.jwksKey" }}
{{- end }}
{{- if and .Values.jwtKeys.existingSecret (not (or .Values.jwtKeys.publicKeyKey .Values.jwtKeys.jwksKey)) }}
{{- fail "jwtKeys.existingSecret needs jwtKeys.publicKeyKey or jwtKeys.jwksKey" }}
{{- end }}
{{- end }}
