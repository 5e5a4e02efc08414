{{- define "sealmesh.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "sealmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{ with .Values.image.digest }}@{{ . }}{{ end }}
{{- end -}}

{{/* The pod template's annotations: scrape annotations (port given) and podAnnotations. */}}
{{- define "sealmesh.podAnnotations" -}}
{{- $a := dict -}}
{{- if and .port .root.Values.metrics.annotations -}}
{{- $_ := set $a "prometheus.io/scrape" "true" -}}
{{- $_ := set $a "prometheus.io/port" (toString .port) -}}
{{- $_ := set $a "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $a = merge (deepCopy .root.Values.podAnnotations) $a -}}
{{- with $a }}
annotations: {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "sealmesh.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The namespaces the plugin passes through: the chart's list and the release's own. */}}
{{- define "sealmesh.excludeNamespaces" -}}
{{- append .Values.cni.excludeNamespaces .Release.Namespace | uniq | join "," -}}
{{- end -}}

{{- define "sealmesh.labels" -}}
app.kubernetes.io/name: sealmesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "sealmesh.selector" -}}
app.kubernetes.io/name: sealmesh
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sealmesh.store" -}}
{{ .Values.coordinator.storeName | default (printf "%s-state" .Release.Name) }}
{{- end -}}

{{- define "sealmesh.coordinatorURL" -}}
https://{{ .Release.Name }}-coordinator-peers.{{ .Release.Namespace }}.svc:7080
{{- end -}}

{{- define "sealmesh.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
