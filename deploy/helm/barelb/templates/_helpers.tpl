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


{{/* OpenTelemetry variables of a component (.service, its own resource .attrs), only when tracing is on. */}}
{{- define "barelb.tracingEnv" -}}
{{- with .root.Values.tracing }}
{{- if .otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $.service | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerRatio | toString | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,%s%s" $.root.Release.Namespace $.attrs (ternary (printf ",%s" .resourceAttributes) "" (ne .resourceAttributes "")) | quote }}
{{- end }}
{{- end }}
{{- end -}}
