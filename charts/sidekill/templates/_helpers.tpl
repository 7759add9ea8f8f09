{{- define "sidekill.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidekill.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sidekill.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sidekill.serviceAccountName" -}}
{{- default (include "sidekill.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "sidekill.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .Values.image.digest) -}}
{{- fail (printf "image.digest must be sha256: and 64 hex digits, not %q" .Values.image.digest) -}}
{{- end -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The nop and quitter images: the value, or NAME:<appVersion> as scripts/build-image names them. */}}
{{- define "sidekill.nopImage" -}}
{{- default (printf "sidekill-nop:%s" .Chart.AppVersion) .Values.stopMethods.imageSwap.image -}}
{{- end -}}

{{- define "sidekill.quitterImage" -}}
{{- default (printf "sidekill-quitter:%s" .Chart.AppVersion) .Values.stopMethods.ephemeral.image -}}
{{- end -}}

{{- define "sidekill.policyNamespace" -}}
{{- default .Release.Namespace .Values.policy.configMap.namespace -}}
{{- end -}}

{{- define "sidekill.checks" -}}
{{- if not (has .Values.policy.source (list "embedded" "file" "configmap")) -}}
{{- fail (printf "policy.source must be embedded, file or configmap, not %q" .Values.policy.source) -}}
{{- end -}}
{{- if and (eq .Values.policy.source "file") (not .Values.policy.file.volume) -}}
{{- fail "policy.source: file needs policy.file.volume (for example {configMap: {name: my-policy}})" -}}
{{- end -}}
{{- if and .Values.policy.sha256 (not (regexMatch "^[0-9a-f]{64}$" .Values.policy.sha256)) -}}
{{- fail (printf "policy.sha256 must be 64 lowercase hex digits, not %q" .Values.policy.sha256) -}}
{{- end -}}
{{- range list (include "sidekill.nopImage" .) (include "sidekill.quitterImage" .) -}}
{{- if not (regexMatch "^[^\\s]+$" .) -}}
{{- fail (printf "stopMethods' images must be image references without spaces, not %q" .) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.watch.allPods .Values.watch.selectors -}}
{{- fail "watch.allPods and watch.selectors exclude each other" -}}
{{- end -}}
{{- end -}}
