{{- define "sealmesh.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "sealmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
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
