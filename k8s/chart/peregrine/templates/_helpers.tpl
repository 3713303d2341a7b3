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

{{/* A role's Kafka identity: (dict "root" . "role" "collector"|"k8sMeta"|"worker"|"sink") ->
     YAML {username, secret: {name, key}}: its own under kafka.sasl.roles, else the KafkaUser
     <release>-<role> when strimzi.users (Strimzi writes its password to a Secret of that name),
     else the shared kafka.sasl identity. */}}
{{- define "peregrine.kafkaIdentity" -}}
{{- $sasl := .root.Values.kafka.sasl }}
{{- $own := index $sasl.roles .role }}
{{- if $own.username }}
username: {{ $own.username | quote }}
secret: {name: {{ $own.passwordSecret.name | quote }}, key: {{ $own.passwordSecret.key | quote }}}
{{- else if .root.Values.strimzi.users }}
{{- $user := include "peregrine.name" (dict "root" .root "role" (.role | replace "k8sMeta" "k8s-meta")) }}
username: {{ $user | quote }}
secret: {name: {{ $user | quote }}, key: password}
{{- else }}
username: {{ $sasl.username | quote }}
secret: {name: {{ $sasl.passwordSecret.name | quote }}, key: {{ $sasl.passwordSecret.key | quote }}}
{{- end }}
{{- end -}}

{{/* The Kafka TLS/SASL settings every Python role reads (bus.security), as env entries, for
     (dict "root" . "role" ...); the CA bundle is passed as --ssl-cafile by the caller and the
     password comes from a Secret. */}}
{{- define "peregrine.kafkaSecurityEnv" -}}
{{- $id := include "peregrine.kafkaIdentity" . | fromYaml }}
- {name: PEREGRINE_KAFKA_SECURITY_PROTOCOL, value: {{ .root.Values.kafka.securityProtocol | quote }}}
{{- if $id.username }}
- {name: PEREGRINE_KAFKA_SASL_MECHANISM, value: {{ .root.Values.kafka.sasl.mechanism | quote }}}
- {name: PEREGRINE_KAFKA_SASL_USERNAME, value: {{ $id.username | quote }}}
{{- end }}
{{- if $id.secret.name }}
- name: PEREGRINE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $id.secret.name }}
      key: {{ $id.secret.key }}
{{- end }}
{{- end -}}
