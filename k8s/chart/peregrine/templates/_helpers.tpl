{{/* Names are <release>-<role>, cut to the 63 characters Kubernetes allows. */}}
{{- define "peregrine.name" -}}
{{- printf "%s-%s" .root.Release.Name .role | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "peregrine.labels" -}}
app.kubernetes.io/name: peregrine
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "peregrine.selector" -}}
app.kubernetes.io/name: peregrine
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "peregrine.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Rules files in load order: those in the image, then the ConfigMap's, by name. */}}
{{- define "peregrine.rulesFiles" -}}
{{- $files := list -}}
{{- range .Values.rules.imageFiles -}}{{- $files = append $files . -}}{{- end -}}
{{- range $name, $_ := .Values.rules.files -}}{{- $files = append $files (printf "/etc/peregrine/rules/%s" $name) -}}{{- end -}}
{{- if not $files -}}{{- fail "rules: set rules.imageFiles or rules.files (the worker needs at least one rules file)" -}}{{- end -}}
{{- join ":" $files -}}
{{- end -}}

{{/* Environment every role shares: where to export metrics, and no per-pod resource labels. */}}
{{- define "peregrine.telemetryEnv" -}}
- name: PEREGRINE_METRICS_PORT
  value: {{ .port | quote }}
{{- with .root.Values.metrics.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Probes every role answers on its metrics port (telemetry/health.py): ready when it has joined
its consumer group / read its topic / attached its probe, live while its loop beats. Liveness never
fails before a role's first beat, so a slow start (the collector compiles its BPF program) is not
killed; readiness keeps it out meanwhile. */}}
{{- define "peregrine.probes" -}}
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet: {path: /livez, port: metrics}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* Pod and container hardening of the unprivileged roles (worker, sink, k8s-meta). */}}
{{- define "peregrine.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "peregrine.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "peregrine.rulesVolume" -}}
{{- if .Values.rules.files }}
- name: rules
  configMap:
    name: {{ include "peregrine.name" (dict "root" . "role" "rules") }}
{{- end }}
{{- end -}}

{{- define "peregrine.rulesMount" -}}
{{- if .Values.rules.files }}
- name: rules
  mountPath: /etc/peregrine/rules
  readOnly: true
{{- end }}
{{- end -}}

{{/* The CA bundle Secret, when TLS to Kafka is on and a CA is given. */}}
{{- define "peregrine.kafkaCaVolume" -}}
{{- if .Values.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret.name }}
    items: [{key: {{ .Values.kafka.tls.caSecret.key }}, path: ca.crt}]
{{- end }}
{{- end -}}

{{- define "peregrine.kafkaCaMount" -}}
{{- if .Values.kafka.tls.caSecret.name }}
- {name: kafka-ca, mountPath: /etc/peregrine/kafka-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "peregrine.kafkaPasswordEnv" -}}
{{- if .Values.kafka.sasl.passwordSecret.name }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.passwordSecret.name }}
      key: {{ .Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- end -}}

{{/* The Kafka TLS/SASL settings every Python role reads (bus.security): env entries;
     the CA bundle is passed as --ssl-cafile by the caller, the password comes from a Secret. */}}
{{- define "peregrine.kafkaSecurityEnv" -}}
- {name: PEREGRINE_KAFKA_SECURITY_PROTOCOL, value: {{ .Values.kafka.securityProtocol | quote }}}
{{- if .Values.kafka.sasl.username }}
- {name: PEREGRINE_KAFKA_SASL_MECHANISM, value: {{ .Values.kafka.sasl.mechanism | quote }}}
- {name: PEREGRINE_KAFKA_SASL_USERNAME, value: {{ .Values.kafka.sasl.username | quote }}}
{{- end }}
{{- include "peregrine.kafkaPasswordEnv" (merge (dict "env" "PEREGRINE_KAFKA_SASL_PASSWORD") .) }}
{{- end -}}
