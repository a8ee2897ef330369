{{/* Labels of every object; the kustomize base carries the same without the last two. */}}
{{- define "barelb.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: barelb
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- if .version }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "barelb.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
