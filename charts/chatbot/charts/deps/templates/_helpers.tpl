{{/* A component's name, also its Service's: <release>-<component>. The chatbot chart's
"chatbot.depsService" builds the same name for the bot's URLs. */}}
{{- define "deps.name" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deps.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: deps
{{- end }}

{{- define "deps.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "deps.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: chatbot
{{- end }}

{{- define "deps.require" -}}
{{- if not .Values.existingSecret }}
{{- fail "deps.existingSecret: create a Secret with the keys redis-password and postgres-password (README, \"Try it with the deps subchart\") and name it here; no password is generated or defaulted" }}
{{- end }}
{{- end }}

{{/* The PersistentVolumeClaim of one component. */}}
{{- define "deps.pvc" -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "deps.name" . }}
  labels:
    {{- include "deps.labels" . | nindent 4 }}
  annotations:
    # helm uninstall keeps the data.
    helm.sh/resource-policy: keep
spec:
  accessModes: ["ReadWriteOnce"]
  {{- with .root.Values.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ .storage }}
{{- end }}

{{/* The Service of one component. */}}
{{- define "deps.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "deps.name" . }}
  labels:
    {{- include "deps.labels" . | nindent 4 }}
spec:
  selector:
    {{- include "deps.selectorLabels" . | nindent 4 }}
  ports:
    - name: {{ .portName }}
      port: {{ .port }}
      targetPort: {{ .portName }}
      protocol: TCP
{{- end }}

{{- define "deps.containerSecurity" -}}
allowPrivilegeEscalation: false
{{- end }}
