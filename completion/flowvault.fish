# fish completion for flowvault. Commands come from `flowvault --help`, key
# names from `flowvault keys --names` (reads the configuration, opens no key);
# tests/cli/completion.sh checks that every option of every command's --help
# is here. Installed as share/fish/vendor_completions.d/flowvault.fish.

function __fish_flowvault_commands
    flowvault --help 2>/dev/null </dev/null | awk '
        /^Commands:/ { on = 1; next }
        on && NF == 0 { exit }
        on { name = $1; $1 = ""; sub(/^ +/, ""); print name "\t" $0 }'
end

function __fish_flowvault_keys
    set -l words (commandline -opc)
    set -l config
    for i in (seq (count $words))
        if test "$words[$i]" = --config; and test $i -lt (count $words)
            set config --config $words[(math $i + 1)]
        else if string match -q -- '--config=*' $words[$i]
            set config $words[$i]
        end
    end
    flowvault $config keys --names 2>/dev/null </dev/null
end

# $argv: commands; true when the command line's command is one of them.
function __fish_flowvault_using
    set -l words (commandline -opc)
    set -e words[1]
    for w in $words
        switch $w
            case '-*'
                continue
            case '*'
                contains -- $w $argv
                return
        end
    end
    return 1
end

complete -c flowvault -f
complete -c flowvault -n __fish_use_subcommand -a '(__fish_flowvault_commands)'
# Global options.
complete -c flowvault -l config -r -F -d 'configuration file'
complete -c flowvault -l json -d 'one JSON document on stdout'
complete -c flowvault -s v -l verbose -d 'more detail on stderr'
complete -c flowvault -s q -l quiet -d 'errors only'
complete -c flowvault -l version -d 'versions of flowvault and its libraries'
complete -c flowvault -s h -l help -d help
# Key names where a command takes KEY.
complete -c flowvault -n '__fish_flowvault_using pubkey generate register status rotate decrypt encrypt' -a '(__fish_flowvault_keys)'
complete -c flowvault -n '__fish_flowvault_using help' -a '(__fish_flowvault_commands)'
complete -c flowvault -n '__fish_flowvault_using keys' -l names -d 'configured names only'
complete -c flowvault -n '__fish_flowvault_using pubkey' -s o -l out -r -F -d 'write the PEM to FILE'
complete -c flowvault -n '__fish_flowvault_using register status' -l phone -x -d 'a phone-number id'
complete -c flowvault -n '__fish_flowvault_using register status' -l waba -x -d 'a WABA id'
complete -c flowvault -n '__fish_flowvault_using register' -l dry-run -d 'upload nothing'
complete -c flowvault -n '__fish_seen_subcommand_from flow; and not __fish_seen_subcommand_from decrypt encrypt media-decrypt' -a 'decrypt encrypt media-decrypt'
complete -c flowvault -n '__fish_seen_subcommand_from decrypt' -s i -l in -r -F -d 'request body'
complete -c flowvault -n '__fish_seen_subcommand_from encrypt' -l request -r -F -d 'request body'
complete -c flowvault -n '__fish_seen_subcommand_from encrypt' -l response -r -F -d 'clear response JSON'
complete -c flowvault -n '__fish_seen_subcommand_from media-decrypt' -l media -r -F -d 'media object JSON'
complete -c flowvault -n '__fish_seen_subcommand_from media-decrypt' -l in -r -F -d 'encrypted file from the CDN'
complete -c flowvault -n '__fish_seen_subcommand_from media-decrypt' -l fetch -d 'download the cdn_url'
complete -c flowvault -n '__fish_seen_subcommand_from media-decrypt' -l ca-file -r -F -d 'CA bundle for --fetch'
complete -c flowvault -n '__fish_seen_subcommand_from media-decrypt' -l allow-host -x -d 'also download from this host'
complete -c flowvault -n '__fish_seen_subcommand_from media-decrypt' -s o -l out -r -F -d 'the clear media file'
complete -c flowvault -n '__fish_flowvault_using rotate' -l new -x -d 'name of the new key'
complete -c flowvault -n '__fish_flowvault_using rotate' -l set -x -d 'FIELD=VALUE of the new key'
complete -c flowvault -n '__fish_flowvault_using rotate' -l grace -x -d 'grace window'
complete -c flowvault -n '__fish_flowvault_using rotate' -l resume -d 'continue the rotation'
complete -c flowvault -n '__fish_flowvault_using rotate' -l status -d 'where the rotation stands'
complete -c flowvault -n '__fish_flowvault_using rotate' -l finish -x -a '(__fish_flowvault_keys)' -d 'retire the previous key'
complete -c flowvault -n '__fish_flowvault_using rotate' -l force -d 'before the grace window ends'
complete -c flowvault -n '__fish_flowvault_using rotate' -l destroy-old -d 'delete the previous key'
complete -c flowvault -n '__fish_flowvault_using rotate' -l no-register -d 'with --finish: refuse when numbers lack the new key'
complete -c flowvault -n '__fish_flowvault_using rotate' -l abort -d 'go back to the previous key'
complete -c flowvault -n '__fish_flowvault_using rotate' -l destroy-new -d 'with --abort: delete the new key'
complete -c flowvault -n '__fish_flowvault_using serve' -l check -d 'check, then exit'
complete -c flowvault -n '__fish_flowvault_using init' -l provider -x -a 'pem pkcs11 tpm2 openssl' -d 'the key plugin'
complete -c flowvault -n '__fish_flowvault_using init' -l key -x -d 'the key name'
complete -c flowvault -n '__fish_flowvault_using init' -l set -x -d 'FIELD=VALUE'
complete -c flowvault -n '__fish_flowvault_using init' -l phone -x -d 'a phone-number id'
complete -c flowvault -n '__fish_flowvault_using init' -l waba -x -d 'a WABA id'
complete -c flowvault -n '__fish_flowvault_using init' -l no-prompt -d 'never ask'
