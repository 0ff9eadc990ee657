{{/* Names and labels. Selectors use only the stable app.kubernetes.io labels below, never
the chart version: a selector is immutable, and a changing one blocks every upgrade. */}}

{{- define "chatbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chatbot.fullname" -}}
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

{{- define "chatbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chatbot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "chatbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatbot
{{- end }}

{{- define "chatbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chatbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chatbot.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- $tag := default .Chart.AppVersion $image.tag | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: `latest` is refused (a restart would change the code); use a version or image.digest" }}
{{- end }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/* The deps subchart's Service for one component (the same rule as charts/deps). */}}
{{- define "chatbot.depsService" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Whether Slack runs in Socket Mode. */}}
{{- define "chatbot.socketMode" -}}
{{- if and .Values.slack.enabled (eq .Values.slack.mode "socket") }}true{{ end }}
{{- end }}

{{/* The most pods that can run at once: replicas (or the HPA's maximum) plus the surge. */}}
{{- define "chatbot.maxReplicas" -}}
{{- $bot := .Values.bot }}
{{- if $bot.autoscaling.enabled }}{{ $bot.autoscaling.maxReplicas }}{{ else }}{{ $bot.replicas }}{{ end }}
{{- end }}

{{/* The grace period: preStop + SHUTDOWN_GRACE_SECONDS + 15 s (cancelled answers 5 s and
closing 10 s: the bot force-exits then) + 10 s margin, unless set; a set value that cannot
hold the sum is refused. */}}
{{- define "chatbot.terminationGracePeriodSeconds" -}}
{{- $bot := .Values.bot }}
{{- $needed := add (int $bot.preStopSeconds) (int (ceil $bot.shutdownGraceSeconds)) 15 }}
{{- if kindIs "invalid" $bot.terminationGracePeriodSeconds }}
{{- add $needed 10 }}
{{- else if lt (int $bot.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "bot.terminationGracePeriodSeconds=%v cannot fit bot.preStopSeconds (%v) + bot.shutdownGraceSeconds (%v) + 15 s for the bot to close: set at least %d, or leave it unset" $bot.terminationGracePeriodSeconds $bot.preStopSeconds $bot.shutdownGraceSeconds $needed) }}
{{- else }}
{{- $bot.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* A URL given in values must not carry a password: it would land in a ConfigMap. */}}
{{- define "chatbot.checkUrl" -}}
{{- if regexMatch "^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@" .url }}
{{- fail (printf "%s.url holds a password: put the whole URL in a Secret and set %s.existingSecret (and %s.existingSecretKey)" .name .name .name) }}
{{- end }}
{{- end }}

{{/* Fails with a clear message on values that cannot work together. Included by every
template that depends on them, so `helm template` of any one file refuses too. */}}
{{- define "chatbot.validate" -}}
{{- $v := .Values }}
{{- $deps := $v.deps.enabled }}
{{- if and (not $deps) (not $v.redis.url) (not $v.redis.existingSecret) }}
{{- fail "redis: set redis.url or redis.existingSecret (every replica shares its work through Redis), or deps.enabled=true to try the bot out" }}
{{- end }}
{{- if and (not $deps) (not $v.postgres.url) (not $v.postgres.existingSecret) }}
{{- fail "postgres: set postgres.url or postgres.existingSecret (the usage ledger), or deps.enabled=true to try the bot out" }}
{{- end }}
{{- if and (not $deps) (not $v.ollama.urls) }}
{{- fail "ollama: set ollama.urls (one or more Ollama servers, in failover order), or deps.enabled=true" }}
{{- end }}
{{- if and $v.redis.url $v.redis.existingSecret }}
{{- fail "redis: set redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and $v.postgres.url $v.postgres.existingSecret }}
{{- fail "postgres: set postgres.url or postgres.existingSecret, not both" }}
{{- end }}
{{- if $v.redis.url }}{{ include "chatbot.checkUrl" (dict "name" "redis" "url" $v.redis.url) }}{{ end }}
{{- if $v.postgres.url }}{{ include "chatbot.checkUrl" (dict "name" "postgres" "url" $v.postgres.url) }}{{ end }}
{{- if and $v.config.KNOWLEDGE_SOURCES (not $v.qdrant.url) (not $deps) }}
{{- fail "config.KNOWLEDGE_SOURCES needs qdrant.url: an embedded store inside a pod would be lost on restart and not shared between replicas" }}
{{- end }}
{{- range $block := list "slack" "teams" "openai" }}
{{- $b := index $v $block }}
{{- if and $b.enabled (not $b.existingSecret) }}
{{- fail (printf "%s.enabled needs %s.existingSecret: the Secret holding its credentials (NOTES and README list the keys)" $block $block) }}
{{- end }}
{{- end }}
{{- if and $v.teams.enabled (eq $v.teams.appType "SingleTenant") (not $v.teams.tenantId) }}
{{- fail "teams.appType=SingleTenant needs teams.tenantId" }}
{{- end }}
{{- $bot := $v.bot }}
{{- if and (eq (int $bot.strategy.maxSurge) 0) (eq (int $bot.strategy.maxUnavailable) 0) }}
{{- fail "bot.strategy: maxSurge and maxUnavailable cannot both be 0" }}
{{- end }}
{{- if and $bot.autoscaling.enabled (gt (int $bot.autoscaling.minReplicas) (int $bot.autoscaling.maxReplicas)) }}
{{- fail "bot.autoscaling.minReplicas is above bot.autoscaling.maxReplicas" }}
{{- end }}
{{- if include "chatbot.socketMode" . }}
{{- $most := int (include "chatbot.maxReplicas" .) }}
{{- if gt $most 4 }}
{{- fail (printf "Slack Socket Mode: %d replicas refused, at most 4. Slack allows an app 10 sockets; each pod holds one, and rollouts and reconnects need spare ones. For more answers per pod raise bot.workers (and its CPU)." $most) }}
{{- end }}
{{- if gt (add $most (int $bot.strategy.maxSurge)) 5 }}
{{- fail (printf "Slack Socket Mode: %d replicas + bot.strategy.maxSurge %d is over 5 sockets during a rollout; lower one of them" $most (int $bot.strategy.maxSurge)) }}
{{- end }}
{{- end }}
{{- $taken := keys (include "chatbot.configData" . | fromYaml) }}
{{- range (include "chatbot.secretEnv" . | fromYamlArray) }}{{ $taken = append $taken .name }}{{ end }}
{{- range (include "chatbot.credentialEnv" . | fromYamlArray) }}{{ $taken = append $taken .name }}{{ end }}
{{- range $bot.extraEnv }}
{{- if has .name $taken }}
{{- fail (printf "bot.extraEnv sets %s, which the chart sets already: use its value (config.%s, or the block it comes from) instead" .name .name) }}
{{- end }}
{{- end }}
{{- if and (eq $v.migrations.mode "hook") $deps }}
{{- fail "migrations.mode=hook cannot reach the database of deps.enabled (a pre-install hook runs before it exists): use migrations.mode=job" }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host" }}
{{- end }}
{{- if and $v.ingress.enabled (not (include "chatbot.publicPaths" (dict "paths" $v.ingress.paths "Values" $v) | trim)) }}
{{- fail "ingress: nothing to publish: enable Teams or Slack's HTTP mode (slack.mode=http), or set ingress.paths" }}
{{- end }}
{{- if and $v.httpRoute.enabled (not (include "chatbot.publicPaths" (dict "paths" ($v.httpRoute.paths | default $v.ingress.paths) "Values" $v) | trim)) }}
{{- fail "httpRoute: nothing to publish: enable Teams or Slack's HTTP mode (slack.mode=http), or set httpRoute.paths" }}
{{- end }}
{{- if and $v.httpRoute.enabled (not $v.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs (the Gateway to attach to)" }}
{{- end }}
{{- if $deps }}
{{- $models := $v.deps.ollama.models | default list }}
{{- $model := $v.config.OLLAMA_MODEL | default "codellama:7b" }}
{{- if not (has $model $models) }}
{{- fail (printf "deps.ollama.models must include the bot's model %s (config.OLLAMA_MODEL)" $model) }}
{{- end }}
{{- $embedding := $v.config.EMBEDDING_MODEL | default "nomic-embed-text" }}
{{- if and $v.config.KNOWLEDGE_SOURCES (not (has $embedding $models)) }}
{{- fail (printf "deps.ollama.models must include the embedding model %s (config.EMBEDDING_MODEL) when config.KNOWLEDGE_SOURCES is set" $embedding) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The paths the Ingress or HTTPRoute publish, one a line. */}}
{{- define "chatbot.publicPaths" -}}
{{- $v := .Values }}
{{- if .paths }}
{{- range .paths }}
{{ . }}
{{- end }}
{{- else }}
{{- if and $v.slack.enabled (eq $v.slack.mode "http") }}
/slack/events
{{- end }}
{{- if $v.teams.enabled }}
/api/messages
{{- end }}
{{- end }}
{{- end }}

{{/* Settings the pods read from the ConfigMap: addresses without credentials and the
config block. */}}
{{- define "chatbot.configData" -}}
{{- $v := .Values }}
PORT: {{ $v.bot.port | quote }}
SHUTDOWN_GRACE_SECONDS: {{ $v.bot.shutdownGraceSeconds | quote }}
{{- if $v.deps.enabled }}
OLLAMA_BASE_URL: {{ printf "http://%s:11434" (include "chatbot.depsService" (dict "root" . "name" "ollama")) | quote }}
KNOWLEDGE_STORE: {{ $v.qdrant.url | default (printf "http://%s:6333" (include "chatbot.depsService" (dict "root" . "name" "qdrant"))) | quote }}
{{- else }}
OLLAMA_BASE_URL: {{ join "," $v.ollama.urls | quote }}
{{- with $v.qdrant.url }}
KNOWLEDGE_STORE: {{ . | quote }}
{{- end }}
{{- end }}
{{- with $v.redis.url }}
REDIS_URL: {{ . | quote }}
{{- end }}
{{- with $v.postgres.url }}
DATABASE_URL: {{ . | quote }}
{{- end }}
{{- if $v.teams.enabled }}
MICROSOFT_APP_TYPE: {{ $v.teams.appType | quote }}
{{- with $v.teams.tenantId }}
MICROSOFT_APP_TENANT_ID: {{ . | quote }}
{{- end }}
{{- end }}
{{- with $v.openai.baseUrl }}
OPENAI_BASE_URL: {{ . | quote }}
{{- end }}
{{- range $name, $value := $v.config }}
{{- if not (kindIs "invalid" $value) }}
{{ $name }}: {{ if or (kindIs "slice" $value) (kindIs "map" $value) }}{{ toJson $value | quote }}{{ else }}{{ $value | toString | quote }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment variables read from Secrets: the database and Redis URLs (existingSecret
or the deps subchart's passwords) and each platform's credentials. */}}
{{- define "chatbot.secretEnv" -}}
{{- $v := .Values }}
{{- if $v.deps.enabled }}
{{- $deps := $v.deps }}
{{- if not $v.redis.url }}
{{- if not $v.redis.existingSecret }}
- name: _DEPS_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $deps.existingSecret }}
      key: {{ $deps.keys.redisPassword }}
- name: REDIS_URL
  value: {{ printf "redis://:$(_DEPS_REDIS_PASSWORD)@%s:6379/0" (include "chatbot.depsService" (dict "root" . "name" "redis")) | quote }}
{{- end }}
{{- end }}
{{- if not $v.postgres.url }}
{{- if not $v.postgres.existingSecret }}
- name: _DEPS_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $deps.existingSecret }}
      key: {{ $deps.keys.postgresPassword }}
- name: DATABASE_URL
  value: {{ printf "postgresql://%s:$(_DEPS_POSTGRES_PASSWORD)@%s:5432/%s" $deps.postgres.user (include "chatbot.depsService" (dict "root" . "name" "postgres")) $deps.postgres.database | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $v.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.redis.existingSecretKey }}
{{- end }}
{{- with $v.postgres.existingSecret }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.postgres.existingSecretKey }}
{{- end }}
{{- end }}

{{- define "chatbot.credentialEnv" -}}
{{- $v := .Values }}
{{- if $v.slack.enabled }}
- name: SLACK_BOT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $v.slack.existingSecret }}
      key: {{ $v.slack.keys.botToken }}
{{- if eq $v.slack.mode "socket" }}
- name: SLACK_APP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $v.slack.existingSecret }}
      key: {{ $v.slack.keys.appToken }}
{{- else }}
- name: SLACK_SIGNING_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.slack.existingSecret }}
      key: {{ $v.slack.keys.signingSecret }}
{{- end }}
{{- end }}
{{- if $v.teams.enabled }}
- name: MICROSOFT_APP_ID
  valueFrom:
    secretKeyRef:
      name: {{ $v.teams.existingSecret }}
      key: {{ $v.teams.keys.appId }}
- name: MICROSOFT_APP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.teams.existingSecret }}
      key: {{ $v.teams.keys.appPassword }}
{{- end }}
{{- if $v.openai.enabled }}
- name: OPENAI_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.openai.existingSecret }}
      key: {{ $v.openai.keys.apiKey }}
{{- end }}
{{- end }}

{{/* The pod security context and the container one, shared by the bot and the migration. */}}
{{- define "chatbot.podSecurity" -}}
securityContext:
  {{- toYaml .Values.bot.podSecurityContext | nindent 2 }}
{{- end }}
