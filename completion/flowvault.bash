# bash completion for flowvault                              -*- shell-script -*-
#
# Commands and options come from the flowvault being completed (`flowvault
# --help`, `flowvault COMMAND --help`), so they always match that binary.
# Key names come from the configuration file itself, read with awk: asking
# `flowvault keys` would open every key, which can mean a PIN or passphrase
# prompt, an HSM login or a TPM round trip on every TAB.
#
# Installed as share/bash-completion/completions/flowvault; to try it from a
# source tree: `. completion/flowvault.bash`.

# Used when the binary cannot be run (not built yet, not on PATH).
_flowvault_fallback_commands="plugins keys generate pubkey register status rotate doctor flow serve init help version"
_flowvault_global_options="--config --json -v --verbose -q --quiet --version -h --help"

# _flowvault_run BIN ARGS...: BIN's output, without its diagnostics, never
# waiting on a terminal.
_flowvault_run()
{
	"$@" </dev/null 2>/dev/null
}

# Command names: the first word of each line in the "Commands:" section.
_flowvault_commands()
{
	local bin=$1 list
	list=$(_flowvault_run "$bin" --help | awk '
		/^Commands:/ { on = 1; next }
		on && /^[^ \t]/ { exit }
		on && NF == 0 { exit }
		on { print $1 }')
	[[ -n $list ]] || list=${_flowvault_fallback_commands// /$'\n'}
	printf '%s\n' "$list"
}

# Options of COMMAND, one a line: "--name" or "--name=ARG" when it takes an
# argument (an upper-case word follows it in the help's option list).
_flowvault_command_options()
{
	local bin=$1 cmd=$2
	_flowvault_run "$bin" "$cmd" --help | awk '
		/^[ \t]+-/ {
			for (i = 1; i <= NF; i++) {
				w = $i; sub(/,$/, "", w)
				if (w !~ /^-/) break
				arg = ""
				if (i < NF && $(i + 1) ~ /^[A-Z][A-Z_]*$/) arg = $(i + 1)
				split(w, parts, "=")
				if (parts[2] != "") arg = parts[2]
				print (arg != "" ? parts[1] "=" arg : parts[1])
			}
		}'
}

# The synopsis of COMMAND: "pubkey KEY [--out FILE]".
_flowvault_synopsis()
{
	_flowvault_run "$1" "$2" --help | sed -n 's/^usage: flowvault \[global options\] //p' | head -n 1
}

# The configuration file flowvault would read, in its own search order.
_flowvault_config_file()
{
	local i word
	for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
		word=${COMP_WORDS[i]}
		if [[ $word == --config && $((i + 1)) -lt ${#COMP_WORDS[@]} && $((i + 1)) -ne $COMP_CWORD ]]; then
			printf '%s\n' "${COMP_WORDS[i + 1]/#\~/$HOME}"
			return
		elif [[ $word == --config=* ]]; then
			word=${word#--config=}
			printf '%s\n' "${word/#\~/$HOME}"
			return
		fi
	done
	if [[ -n ${FLOWVAULT_CONFIG:-} ]]; then
		printf '%s\n' "$FLOWVAULT_CONFIG"
	elif [[ -n ${XDG_CONFIG_HOME:-} && -f $XDG_CONFIG_HOME/flowvault/config.json ]]; then
		printf '%s\n' "$XDG_CONFIG_HOME/flowvault/config.json"
	elif [[ -z ${XDG_CONFIG_HOME:-} && -f ${HOME:-/nonexistent}/.config/flowvault/config.json ]]; then
		printf '%s\n' "$HOME/.config/flowvault/config.json"
	else
		printf '%s\n' /etc/flowvault/config.json
	fi
}

# Key names: the member names of the top-level "keys" object of the
# configuration, in file order. A small JSON scanner (strings, escapes,
# nesting, and the comments json-c accepts), so names are found wherever
# the line breaks are.
_flowvault_key_names()
{
	local config
	config=$(_flowvault_config_file)
	[[ -r $config ]] || return 0
	awk '
		{ text = text $0 "\n" }
		END {
			n = length(text); depth = 0; in_keys = 0; member = ""
			for (i = 1; i <= n; i++) {
				c = substr(text, i, 1)
				if (c == "/" && substr(text, i + 1, 1) == "*") {
					j = index(substr(text, i + 2), "*/")
					if (j == 0) break
					i += j + 2; continue
				}
				if (c == "/" && substr(text, i + 1, 1) == "/") {
					while (i <= n && substr(text, i, 1) != "\n") i++
					continue
				}
				if (c == "\"") {
					s = ""
					for (i++; i <= n; i++) {
						d = substr(text, i, 1)
						if (d == "\\") { s = s d substr(text, i + 1, 1); i++; continue }
						if (d == "\"") break
						s = s d
					}
					k = i + 1
					while (k <= n && substr(text, k, 1) ~ /[ \t\r\n]/) k++
					if (substr(text, k, 1) == ":") {
						if (depth == 1) member = s
						else if (depth == 2 && in_keys) print s
					}
					continue
				}
				if (c == "{" || c == "[") {
					depth++
					if (depth == 2 && c == "{" && member == "keys") in_keys = 1
				} else if (c == "}" || c == "]") {
					if (depth == 2) in_keys = 0
					depth--
				}
			}
		}' "$config" 2>/dev/null
}

# Add the words of LIST (one a line) that start with $cur to COMPREPLY.
_flowvault_add_matches()
{
	local word
	while IFS= read -r word; do
		[[ -n $word && $word == "$cur"* ]] && COMPREPLY+=("$word")
	done <<<"$1"
}

_flowvault()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev="" bin=${COMP_WORDS[0]/#\~/$HOME}
	local i word cmd="" cmd_index=0 options="" opt arg synopsis names="" positionals=0
	COMPREPLY=()
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	command -v "$bin" >/dev/null 2>&1 || bin=flowvault

	# The command is the first word that is neither an option nor the
	# argument of --config.
	for ((i = 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		if [[ $word == --config ]]; then
			((i++))
		elif [[ $word == -- ]]; then
			break
		elif [[ $word != -* ]]; then
			cmd=$word
			cmd_index=$i
			break
		fi
	done

	if [[ $prev == --config ]]; then
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0
	fi
	if [[ $cur == --config=* ]]; then
		compopt -o filenames 2>/dev/null
		cur=${cur#--config=}
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0
	fi

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			_flowvault_add_matches "${_flowvault_global_options// /$'\n'}"
		else
			_flowvault_add_matches "$(_flowvault_commands "$bin")"
		fi
		return 0
	fi

	options=$(_flowvault_command_options "$bin" "$cmd")
	synopsis=$(_flowvault_synopsis "$bin" "$cmd")

	# `help COMMAND`: the commands.
	if [[ $cmd == help && $cur != -* ]]; then
		_flowvault_add_matches "$(_flowvault_commands "$bin")"
		return 0
	fi

	# Commands with actions ("flow decrypt KEY [--in FILE] | flow encrypt KEY
	# --request FILE --response FILE"): the action first, then that
	# alternative's own options and KEY.
	local alt action="" actions=""
	while IFS= read -r alt; do
		[[ $alt =~ ^$cmd\ ([a-z][a-z-]*)(\ |$) ]] && actions+=${BASH_REMATCH[1]}$'\n'
	done <<<"${synopsis// | /$'\n'}"
	if [[ -n $actions ]]; then
		for ((i = cmd_index + 1; i < COMP_CWORD; i++)); do
			if [[ $'\n'$actions == *$'\n'"${COMP_WORDS[i]}"$'\n'* ]]; then
				action=${COMP_WORDS[i]}
				break
			fi
		done
		if [[ -z $action ]]; then
			[[ $cur == -* ]] || _flowvault_add_matches "$actions"
			return 0
		fi
		while IFS= read -r alt; do
			[[ $alt == "$cmd $action"* ]] && synopsis=$alt
		done <<<"${synopsis// | /$'\n'}"
		# This action's options only, as the help lists them.
		local kept="" word2
		while IFS= read -r opt; do
			word2=${opt%%=*}
			[[ -n $opt && " $synopsis " == *" $word2 "* || " $synopsis " == *"[$word2 "* ]] &&
				kept+=$opt$'\n'
		done <<<"$options"
		options=$kept
		((cmd_index = cmd_index + 1))
		while ((cmd_index < COMP_CWORD)) && [[ ${COMP_WORDS[cmd_index]} != "$action" ]]; do
			((cmd_index++))
		done
	fi

	# The argument of an option of the command: files, key names or nothing.
	while IFS= read -r opt; do
		[[ $opt == *=* ]] || continue
		if [[ $prev == "${opt%%=*}" ]]; then
			arg=${opt#*=}
			# rotate --finish NAME names a configured key.
			[[ $cmd == rotate && $prev == --finish ]] && arg=KEY
			case $arg in
			FILE | PATH | DIR*)
				compopt -o filenames 2>/dev/null
				mapfile -t COMPREPLY < <(compgen -f -- "$cur")
				;;
			KEY)
				_flowvault_add_matches "$(_flowvault_key_names)"
				;;
			esac
			return 0
		fi
	done <<<"$options"

	if [[ $cur == -* ]]; then
		while IFS= read -r opt; do
			[[ -n $opt ]] && names+=${opt%%=*}$'\n'
		done <<<"$options"
		_flowvault_add_matches "$(printf '%s\n%s' "${_flowvault_global_options// /$'\n'}" \
			"$names" | sort -u)"
		return 0
	fi

	# Words after the command that are neither options nor their arguments.
	for ((i = cmd_index + 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		if [[ $word == --config || $'\n'$options$'\n' == *$'\n'"$word="* ]]; then
			((i++))
		elif [[ $word != -* ]]; then
			((positionals++))
		fi
	done

	# A positional KEY, when the synopsis names one ("pubkey KEY [--out FILE]")
	# and it has not been given yet; "KEY..." takes any number.
	synopsis=" $synopsis "
	if [[ $synopsis == *" KEY... "* || $synopsis == *" [KEY...] "* ]] ||
		[[ ($synopsis == *" KEY "* || $synopsis == *" [KEY] "*) && $positionals -eq 0 ]]; then
		_flowvault_add_matches "$(_flowvault_key_names)"
	fi
	return 0
}

complete -F _flowvault flowvault
