{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "edgeplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, with the chart name unless the release already has it. */}}
{{- define "edgeplane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "edgeplane.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "edgeplane.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edgeplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "edgeplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "edgeplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgeplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "edgeplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "edgeplane.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "edgeplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The in-cluster agent: its name (Deployment or DaemonSet, Service), the Secret with
its server certificate, and the Secret with the client certificate the operator presents. */}}
{{- define "edgeplane.agent.name" -}}
{{- printf "%s-agent" (include "edgeplane.fullname" .) -}}
{{- end -}}

{{- define "edgeplane.agent.tlsSecret" -}}
{{- default (printf "%s-tls" (include "edgeplane.agent.name" .)) .Values.agent.tls.existingSecret -}}
{{- end -}}

{{- define "edgeplane.agent.clientSecret" -}}
{{- printf "%s-client-tls" (include "edgeplane.agent.name" .) -}}
{{- end -}}

{{/* The Service's DNS name: the EdgeTarget's host, and a name of the server certificate. */}}
{{- define "edgeplane.agent.host" -}}
{{- printf "%s.%s.svc" (include "edgeplane.agent.name" .) .Release.Namespace -}}
{{- end -}}

{{- define "edgeplane.agent.tokenSecret" -}}
{{- default (printf "%s-token" (include "edgeplane.agent.name" .)) .Values.agent.existingSecret -}}
{{- end -}}

{{/* The agent's CA, server certificate and (with agent.tls.clientCertificates) the
operator's client certificate, as Secret data (base64). Kept across upgrades: the Secrets'
values are reused when they hold all that is asked for (the CA's key is not kept, so
anything missing means a new CA and new certificates). Include it once per render: each
call makes new keys. */}}
{{- define "edgeplane.agent.certificates" -}}
{{- $tls := .Values.agent.tls }}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "edgeplane.agent.tlsSecret" .) }}
{{- $oldClient := lookup "v1" "Secret" .Release.Namespace (include "edgeplane.agent.clientSecret" .) }}
{{- if and $old (or (not $tls.clientCertificates) $oldClient) }}
server:
  ca.crt: {{ index $old.data "ca.crt" }}
  tls.crt: {{ index $old.data "tls.crt" }}
  tls.key: {{ index $old.data "tls.key" }}
{{- if $tls.clientCertificates }}
client:
  tls.crt: {{ index $oldClient.data "tls.crt" }}
  tls.key: {{ index $oldClient.data "tls.key" }}
{{- end }}
{{- else }}
{{- $name := include "edgeplane.agent.name" . }}
{{- $host := include "edgeplane.agent.host" . }}
{{- $days := int $tls.days }}
{{- $ca := genCA (printf "%s-ca" $name) $days }}
{{- $hosts := list $name (printf "%s.%s" $name .Release.Namespace) $host (printf "%s.cluster.local" $host) }}
{{- $server := genSignedCert $name nil $hosts $days $ca }}
{{- $client := genSignedCert "edgeplane-operator" nil nil $days $ca }}
server:
  ca.crt: {{ $ca.Cert | b64enc }}
  tls.crt: {{ $server.Cert | b64enc }}
  tls.key: {{ $server.Key | b64enc }}
client:
  tls.crt: {{ $client.Cert | b64enc }}
  tls.key: {{ $client.Key | b64enc }}
{{- end }}
{{- end -}}
