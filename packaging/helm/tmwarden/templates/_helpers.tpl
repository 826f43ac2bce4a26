{{- define "tmwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tmwarden.fullname" -}}
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

{{- define "tmwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tmwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tmwarden.selector" -}}
app.kubernetes.io/name: {{ include "tmwarden.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tmwarden.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The telemetry: section shared by both configurations; empty when OTLP is off. */}}
{{- define "tmwarden.telemetry" -}}
{{- with .Values.telemetry.otlp -}}
{{- if .endpoint }}
telemetry:
  endpoint: {{ .endpoint | quote }}
  protocol: {{ .protocol }}
  insecure: {{ .insecure }}
  interval: {{ .interval }}
  traces: {{ .traces }}
  {{- with .headers }}
  headers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The agent's YAML configuration (strict: only keys the agent knows). */}}
{{- define "tmwarden.agentConfig" -}}
{{- $fullname := include "tmwarden.fullname" . -}}
{{- $base := dict
  "coordinator" (printf "%s-coordinator:%d" $fullname (int .Values.coordinator.grpcPort))
  "interval" .Values.agent.interval
  "http_addr" (printf ":%d" (int .Values.agent.httpPort))
  "log_level" .Values.agent.logLevel
  "collectors" (dict "paths" (dict "procfs" "/host/proc" "sysfs" "/host/sys"))
-}}
{{- with .Values.agent.stateCache }}
{{- if .enabled }}
{{- $secret := required "agent.stateCache.existingSecret is required with agent.stateCache.enabled" .existingSecret }}
{{- $upstream := dict
  "endpoint" (required "agent.stateCache.upstream.endpoint is required with agent.stateCache.enabled" .upstream.endpoint)
  "region" .upstream.region
  "path_style" .upstream.pathStyle
-}}
{{- if .upstream.staticCredentials }}
{{- $_ := set $upstream "access_key_file" "/etc/tmwarden/state-cache/upstream-access-key" }}
{{- $_ := set $upstream "secret_key_file" "/etc/tmwarden/state-cache/upstream-secret-key" }}
{{- end }}
{{- $_ := set $base "state_cache" (dict
  "enabled" true
  "listen" (printf ":%d" (int $.Values.agent.gatewayPort))
  "dir" "/var/lib/tmwarden/cache"
  "capacity_bytes" (int64 .capacityBytes)
  "access_key_file" "/etc/tmwarden/state-cache/access-key"
  "secret_key_file" "/etc/tmwarden/state-cache/secret-key"
  "upstream" $upstream) }}
{{- end }}
{{- end }}
{{- toYaml (mergeOverwrite $base (deepCopy .Values.agent.config)) }}
{{- include "tmwarden.telemetry" . }}
{{- end -}}

{{/* The coordinator's YAML configuration. */}}
{{- define "tmwarden.coordinatorConfig" -}}
{{- $base := dict
  "data_dir" "/var/lib/tmwarden"
  "grpc_addr" (printf ":%d" (int .Values.coordinator.grpcPort))
  "http_addr" (printf ":%d" (int .Values.coordinator.httpPort))
  "log_level" .Values.coordinator.logLevel
-}}
{{- toYaml (mergeOverwrite $base (deepCopy .Values.coordinator.config)) }}
{{- include "tmwarden.telemetry" . }}
{{- end -}}
