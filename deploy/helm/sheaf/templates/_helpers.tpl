{{/* Names, labels and derived settings of the Sheaf chart. */}}

{{- define "sheaf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The StatefulSet's name; pods are <fullname>-0, -1, ... (kept short enough for pod names). */}}
{{- define "sheaf.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sheaf.headless" -}}
{{- printf "%s-headless" (include "sheaf.fullname" .) }}
{{- end }}

{{- define "sheaf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sheaf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sheaf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sheaf.labels" -}}
helm.sh/chart: {{ include "sheaf.chart" . }}
{{ include "sheaf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end }}

{{- define "sheaf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sheaf.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sheaf.scheme" -}}
{{- if .Values.tls.enabled }}grpc+tls{{ else }}grpc{{ end }}
{{- end }}

{{/* The DNS suffix of the pods' stable names: <headless>.<namespace>.svc.<clusterDomain>. */}}
{{- define "sheaf.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "sheaf.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* Pods that may exist: autoscaling.maxReplicas with autoscaling, else replicaCount. */}}
{{- define "sheaf.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.maxReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/* Every replica's address, as a JSON list (pods that do not exist fail the health check and are left out). */}}
{{- define "sheaf.peers" -}}
{{- $peers := list }}
{{- $scheme := include "sheaf.scheme" . }}
{{- $full := include "sheaf.fullname" . }}
{{- $domain := include "sheaf.podDomain" . }}
{{- range $i := until (int (include "sheaf.maxReplicas" .)) }}
{{- $peers = append $peers (printf "%s://%s-%d.%s:%d" $scheme $full $i $domain (int $.Values.ports.grpc)) }}
{{- end }}
{{- toJson $peers }}
{{- end }}

{{- define "sheaf.authSecretName" -}}
{{- default (printf "%s-auth" (include "sheaf.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "sheaf.storageSecretName" -}}
{{- default (printf "%s-storage" (include "sheaf.fullname" .)) .Values.storage.existingSecret }}
{{- end }}

{{/* Stops the render with a message naming the value to fix. */}}
{{- define "sheaf.validate" -}}
{{- $managed := list "listen" "metrics-listen" "registry" "advertise" "peer" "peer-dns" "auth" "tls-cert" "tls-key" "tls-client-ca" "peer-ca" "insecure-anonymous" "drain-delay" "shutdown-grace" "config" }}
{{- range $key, $_ := .Values.config }}
{{- if has $key $managed }}
{{- fail (printf "config.%s: set by the chart; use the chart's own value instead (registry, auth, tls, ports, drainDelaySeconds, shutdownGraceSeconds, insecureAnonymous)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.auth.enabled (not (or .Values.auth.existingSecret .Values.auth.config)) }}
{{- fail "auth.enabled: give auth.existingSecret (a Secret holding the auth file) or auth.config (its text)" }}
{{- end }}
{{- if and .Values.auth.existingSecret .Values.auth.config }}
{{- fail "auth: give auth.existingSecret or auth.config, not both" }}
{{- end }}
{{- if not (or .Values.auth.enabled .Values.insecureAnonymous) }}
{{- fail "auth.enabled is false: set auth.enabled=true with auth.existingSecret or auth.config, or insecureAnonymous=true to let anyone who reaches the port read and write every package" }}
{{- end }}
{{- if and .Values.auth.enabled .Values.insecureAnonymous }}
{{- fail "insecureAnonymous: has no effect with auth.enabled; grant `anonymous` in the auth file instead" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled: give tls.secretName (a Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and .Values.storage.existingSecret .Values.storage.secretEnv }}
{{- fail "storage: give storage.existingSecret or storage.secretEnv, not both" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
