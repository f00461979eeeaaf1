# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_strata_global_optspecs
    string join \n v/verbose h/help V/version
end

function __fish_strata_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_strata_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_strata_using_subcommand
    set -l cmd (__fish_strata_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c strata -n "__fish_strata_needs_command" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c strata -n "__fish_strata_needs_command" -s V -l version -d 'Print version'
complete -c strata -n "__fish_strata_needs_command" -f -a "init" -d 'Create a store with disks os, data and temp, layered by a preset (creates the vault and the keys it needs if they do not exist)'
complete -c strata -n "__fish_strata_needs_command" -f -a "mount" -d 'Mount a store: one directory per disk under MOUNTPOINT. One daemon per store: it holds the store\'s lock for its life, and a second mount is refused naming the first'
complete -c strata -n "__fish_strata_needs_command" -f -a "disk" -d 'Disks of a store: add, list, show'
complete -c strata -n "__fish_strata_needs_command" -f -a "scope" -d 'Scopes: one customer key bound to a group of disks'
complete -c strata -n "__fish_strata_needs_command" -f -a "umount" -d 'Unmount a strata mount; returns once its daemon has let go of the store'
complete -c strata -n "__fish_strata_needs_command" -f -a "inspect" -d 'Decode a backing file\'s header (no key needed); with the vault, check its tags, name it and decrypt it. With --path, find the backing file of a plaintext path. Exit 0 sound, 1 damaged, 2 could not run'
complete -c strata -n "__fish_strata_needs_command" -f -a "verify" -d 'Check every header, block tag and name of a store\'s persistent disks, in parallel; without the vault, structure only. Exit 0 clean, 1 problems found, 2 could not run'
complete -c strata -n "__fish_strata_needs_command" -f -a "scan" -d 'Read every byte of a backing store looking for plaintext: needles (UTF-8 and UTF-16LE) and low-entropy files. Exit 0 nothing found, 1 plaintext found, 2 could not run'
complete -c strata -n "__fish_strata_needs_command" -f -a "status" -d 'Show a running mount: disks, layers, revoked disks, open files, cache size and hit rate, bytes read and written, the control socket'
complete -c strata -n "__fish_strata_needs_command" -f -a "snapshot" -d 'Snapshots: point-in-time, crash-consistent copies of a disk'
complete -c strata -n "__fish_strata_needs_command" -f -a "image" -d 'Images: disks to make new disks from'
complete -c strata -n "__fish_strata_needs_command" -f -a "vault" -d 'The vault: keys sealed with a passphrase'
complete -c strata -n "__fish_strata_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish) on stdout'
complete -c strata -n "__fish_strata_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand init" -l preset -d 'Which layers to turn on' -r -f -a "general\t'SSE with a platform-managed key'
compliance\t'SSE with a customer-managed key'
os-policy\t'Guest encryption (ADE) plus SSE with a platform key'
full\t'Encryption at host plus SSE with a platform key'
fleet\t'One scope\'s customer key over all disks'
max\t'Guest + SSE double (CMK + PMK) + host, in a scope'"
complete -c strata -n "__fish_strata_using_subcommand init" -l region -d 'Region label of the store (and of a vault created now)' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l host -d 'Override the preset\'s host encryption (fixed after init)' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l pmk-rotation-days -d 'Age in days after which platform keys rotate' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l cmk -d 'Customer key of the storage CMK layer and of the preset\'s scope, instead of the preset\'s (cmk, fleet-cmk, max-cmk); it may be a key held by a key service (made first with `vault key create`)' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand init" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand init" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand init" -l kdf-memory -d 'Argon2id memory in KiB for a new vault or passphrase (1024 to 1048576)' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l kdf-iterations -d 'Argon2id passes for a new vault or passphrase (1 to 10)' -r
complete -c strata -n "__fish_strata_using_subcommand init" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand init" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c strata -n "__fish_strata_using_subcommand mount" -l cache-size -d 'Block cache size in bytes' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l log-file -d 'Append logs to FILE [default: with -f stderr, else the journal when journald runs, else syslog; on macOS syslog]' -r -F
complete -c strata -n "__fish_strata_using_subcommand mount" -l threads -d 'FUSE worker threads [default: four per CPU, 4 to 8; on macOS one, the only number there]' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l idle -d 'Unmount after DURATION (e.g. 90s, 10m, 1h30m) in which no file was open and no request came; a busy mount is never unmounted' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l key-check-interval -d 'Seconds between two checks of the keys held by a key service (a revocation there reaches this mount within about twice this)' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l key-grace -d 'Seconds a mount keeps serving from the keys in memory while their key service cannot be reached; then the dependent disks are refused until it answers again' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand mount" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand mount" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand mount" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand mount" -s f -l foreground -d 'Stay in the foreground (logs to stderr)'
complete -c strata -n "__fish_strata_using_subcommand mount" -l ro -d 'Mount read-only'
complete -c strata -n "__fish_strata_using_subcommand mount" -l allow-other -d 'Let other users use the mount'
complete -c strata -n "__fish_strata_using_subcommand mount" -l noexec -d 'Forbid running programs from the mount'
complete -c strata -n "__fish_strata_using_subcommand mount" -l noatime -d 'Do not update access times'
complete -c strata -n "__fish_strata_using_subcommand mount" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand mount" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand mount" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -f -a "add" -d 'Add a disk (data, or temp) with its own DEKs (offline)'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -f -a "rekey" -d 'Re-encrypt a disk under new DEKs for the given layers, offline and resumably (run it again after an interruption to finish)'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -f -a "encrypt" -d 'Turn the guest layer on for a disk that holds data: an offline, resumable conversion ("needs a reboot")'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -f -a "list" -d 'List the disks of a store (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -f -a "show" -d 'Show a disk: layers, ciphers, keys and versions, scope, created, rotation due dates (with the vault), and what the real cloud would refuse'
complete -c strata -n "__fish_strata_using_subcommand disk; and not __fish_seen_subcommand_from add rekey encrypt list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l kind -d 'data or temp' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l guest-key -d 'Vault key wrapping the guest DEK (implies --guest)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l sse -d 'Storage keying: platform, customer:KEY or double:KEY' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l scope -d 'Put the disk in a scope (it takes the scope\'s key)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l host -d 'Refused: host encryption is fixed at init' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l from-image -d 'Fill the new disk from an image, re-encrypted under the disk\'s own DEKs (offline; run again to resume an interrupted fill)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l guest -d 'Turn the guest layer on (ADE), keyed by `guest-kek` unless --guest-key'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l layer -d 'Layers to re-key: guest, host, storage (every storage pass), storage-cmk, storage-pmk' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from rekey" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l guest-key -d 'Vault key wrapping the guest DEK' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l guest -d 'Add the guest layer (the only layer that can be added after init)'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from encrypt" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a disk (data, or temp) with its own DEKs (offline)'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from help" -f -a "rekey" -d 'Re-encrypt a disk under new DEKs for the given layers, offline and resumably (run it again after an interruption to finish)'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from help" -f -a "encrypt" -d 'Turn the guest layer on for a disk that holds data: an offline, resumable conversion ("needs a reboot")'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the disks of a store (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a disk: layers, ciphers, keys and versions, scope, created, rotation due dates (with the vault), and what the real cloud would refuse'
complete -c strata -n "__fish_strata_using_subcommand disk; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand scope; and not __fish_seen_subcommand_from create list help" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand scope; and not __fish_seen_subcommand_from create list help" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand scope; and not __fish_seen_subcommand_from create list help" -f -a "create" -d 'Create a scope bound to a customer key (created if missing; offline)'
complete -c strata -n "__fish_strata_using_subcommand scope; and not __fish_seen_subcommand_from create list help" -f -a "list" -d 'List the scopes of a store and their disks'
complete -c strata -n "__fish_strata_using_subcommand scope; and not __fish_seen_subcommand_from create list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l key -d 'Customer key bound to the scope' -r
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a scope bound to a customer key (created if missing; offline)'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the scopes of a store and their disks'
complete -c strata -n "__fish_strata_using_subcommand scope; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand umount" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand umount" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand inspect" -l path -d 'Plaintext path DISK/some/file to look up in the store TARGET' -r -F
complete -c strata -n "__fish_strata_using_subcommand inspect" -l block -d 'Write the plaintext of block N (to --out, or stdout)' -r
complete -c strata -n "__fish_strata_using_subcommand inspect" -l out -d 'Where --block goes' -r -F
complete -c strata -n "__fish_strata_using_subcommand inspect" -l decrypt-to -d 'Write the whole plaintext of the file to FILE' -r -F
complete -c strata -n "__fish_strata_using_subcommand inspect" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand inspect" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand inspect" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand inspect" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand inspect" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand inspect" -l json -d 'Print JSON (documented in docs/FORENSICS.md)'
complete -c strata -n "__fish_strata_using_subcommand inspect" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand inspect" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand verify" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand verify" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand verify" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand verify" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand verify" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand verify" -l json -d 'Print JSON (documented in docs/FORENSICS.md)'
complete -c strata -n "__fish_strata_using_subcommand verify" -l repair -d 'Offline: restore directory ids from their copies, seal blocks torn by a crash as found, and move files whose header is lost to lost+found; never deletes'
complete -c strata -n "__fish_strata_using_subcommand verify" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand verify" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand verify" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand scan" -l needle -d 'Text to look for (repeatable)' -r
complete -c strata -n "__fish_strata_using_subcommand scan" -l json -d 'Print JSON (documented in docs/FORENSICS.md)'
complete -c strata -n "__fish_strata_using_subcommand scan" -l include-config -d 'Also scan the store\'s config file(s)'
complete -c strata -n "__fish_strata_using_subcommand scan" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand scan" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand status" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand status" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand status" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -f -a "create" -d 'Take a snapshot of a disk: online through the running mount (writes held during the copy) or offline. The ciphertext is copied as it is (reflinked where the backing filesystem can) and keeps the disk\'s keys'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -f -a "list" -d 'List snapshots (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -f -a "delete" -d 'Delete a snapshot (offline)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -f -a "restore" -d 'Bring a disk back to a snapshot, byte for byte and with the keys it had then (offline, resumable)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and not __fish_seen_subcommand_from create list delete restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from help" -f -a "create" -d 'Take a snapshot of a disk: online through the running mount (writes held during the copy) or offline. The ciphertext is copied as it is (reflinked where the backing filesystem can) and keeps the disk\'s keys'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from help" -f -a "list" -d 'List snapshots (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a snapshot (offline)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Bring a disk back to a snapshot, byte for byte and with the keys it had then (offline, resumable)'
complete -c strata -n "__fish_strata_using_subcommand snapshot; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand image; and not __fish_seen_subcommand_from create list delete help" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand image; and not __fish_seen_subcommand_from create list delete help" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand image; and not __fish_seen_subcommand_from create list delete help" -f -a "create" -d 'Make an image from a disk (offline) or a snapshot (DISK@SNAPSHOT, also while mounted)'
complete -c strata -n "__fish_strata_using_subcommand image; and not __fish_seen_subcommand_from create list delete help" -f -a "list" -d 'List images (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand image; and not __fish_seen_subcommand_from create list delete help" -f -a "delete" -d 'Delete an image'
complete -c strata -n "__fish_strata_using_subcommand image; and not __fish_seen_subcommand_from create list delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l from -d 'DISK or DISK@SNAPSHOT' -r
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "create" -d 'Make an image from a disk (offline) or a snapshot (DISK@SNAPSHOT, also while mounted)'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "list" -d 'List images (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete an image'
complete -c strata -n "__fish_strata_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -f -a "create" -d 'Create a vault and print its recovery key once'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -f -a "list" -d 'List keys: names, kinds, versions, state, creation (never material)'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -f -a "passwd" -d 'Change the passphrase, with a new master key: the old passphrase then opens neither the vault nor its backup. No store is touched. The recovery slot is made again: keep the recovery key by giving it (--keep-recovery-key, or unlock with --recovery-key-file), or get a new one (--new-recovery-key). Refused while a mount uses the vault'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -f -a "recovery-key" -d 'Replace the recovery key (printed once), with a new master key: the old recovery key then opens neither the vault nor its backup. Needs the passphrase. Refused while a mount uses the vault'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -f -a "key" -d 'Manage keys'
complete -c strata -n "__fish_strata_using_subcommand vault; and not __fish_seen_subcommand_from create list passwd recovery-key key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l region -d 'Region label of the vault' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l kdf-memory -d 'Argon2id memory in KiB for a new vault or passphrase (1024 to 1048576)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l kdf-iterations -d 'Argon2id passes for a new vault or passphrase (1 to 10)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l new-passphrase-file -d 'Read the new passphrase from FILE instead of asking twice' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l keep-recovery-key -d 'The current recovery key, read from FILE, to keep working' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l kdf-memory -d 'Argon2id memory in KiB for a new vault or passphrase (1024 to 1048576)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l kdf-iterations -d 'Argon2id passes for a new vault or passphrase (1 to 10)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l new-recovery-key -d 'Replace the recovery key too (the new one is printed once)'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from passwd" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -l vault -d 'Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault]' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -l passphrase-file -d 'Read the passphrase from FILE (one trailing newline is ignored) instead of asking on the terminal' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -l passphrase-command -d 'Run CMD and read the passphrase from its standard output (one trailing newline is ignored), as gocryptfs\' -extpass. Given once, CMD is split on whitespace; given several times, each is one argument. No shell is involved unless --passphrase-shell' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -l passphrase-credential -d 'Read the passphrase from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit)' -r
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -l recovery-key-file -d 'Unlock with the recovery key read from FILE instead of the passphrase' -r -F
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -l passphrase-shell -d 'Run the --passphrase-command through /bin/sh -c'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from recovery-key" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -f -a "create" -d 'Create a key: in the vault, or, with --kms-address, a customer key held by a key service (OpenBao or Vault Transit; the vault keeps only where it is and how to reach it)'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -f -a "rotate" -d 'Add a version to a key (in the vault, or in the key service that holds it when this vault may administer it); stores given with --store are rewrapped to the newest version now (no data is rewritten; a running mount of such a store follows the rewrap), others at their next mount'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -f -a "disable" -d 'Disable (revoke) a key or one version (NAME@VERSION): disks that depend on it become unavailable, at mount and within seconds in a running mount. Nothing is deleted. A key held by a key service is disabled there (a soft delete), for every machine that uses it'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -f -a "enable" -d 'Enable a key or one version again'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -f -a "policy" -d 'Set or clear a key\'s rotation policy'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from key" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a vault and print its recovery key once'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "list" -d 'List keys: names, kinds, versions, state, creation (never material)'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "passwd" -d 'Change the passphrase, with a new master key: the old passphrase then opens neither the vault nor its backup. No store is touched. The recovery slot is made again: keep the recovery key by giving it (--keep-recovery-key, or unlock with --recovery-key-file), or get a new one (--new-recovery-key). Refused while a mount uses the vault'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "recovery-key" -d 'Replace the recovery key (printed once), with a new master key: the old recovery key then opens neither the vault nor its backup. Needs the passphrase. Refused while a mount uses the vault'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "key" -d 'Manage keys'
complete -c strata -n "__fish_strata_using_subcommand vault; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand completions" -s v -l verbose -d 'More log output (-v info, -vv debug); RUST_LOG overrides'
complete -c strata -n "__fish_strata_using_subcommand completions" -s h -l help -d 'Print help'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "init" -d 'Create a store with disks os, data and temp, layered by a preset (creates the vault and the keys it needs if they do not exist)'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "mount" -d 'Mount a store: one directory per disk under MOUNTPOINT. One daemon per store: it holds the store\'s lock for its life, and a second mount is refused naming the first'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "disk" -d 'Disks of a store: add, list, show'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "scope" -d 'Scopes: one customer key bound to a group of disks'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "umount" -d 'Unmount a strata mount; returns once its daemon has let go of the store'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "inspect" -d 'Decode a backing file\'s header (no key needed); with the vault, check its tags, name it and decrypt it. With --path, find the backing file of a plaintext path. Exit 0 sound, 1 damaged, 2 could not run'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "verify" -d 'Check every header, block tag and name of a store\'s persistent disks, in parallel; without the vault, structure only. Exit 0 clean, 1 problems found, 2 could not run'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "scan" -d 'Read every byte of a backing store looking for plaintext: needles (UTF-8 and UTF-16LE) and low-entropy files. Exit 0 nothing found, 1 plaintext found, 2 could not run'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "status" -d 'Show a running mount: disks, layers, revoked disks, open files, cache size and hit rate, bytes read and written, the control socket'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "snapshot" -d 'Snapshots: point-in-time, crash-consistent copies of a disk'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "image" -d 'Images: disks to make new disks from'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "vault" -d 'The vault: keys sealed with a passphrase'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish) on stdout'
complete -c strata -n "__fish_strata_using_subcommand help; and not __fish_seen_subcommand_from init mount disk scope umount inspect verify scan status snapshot image vault completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from disk" -f -a "add" -d 'Add a disk (data, or temp) with its own DEKs (offline)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from disk" -f -a "rekey" -d 'Re-encrypt a disk under new DEKs for the given layers, offline and resumably (run it again after an interruption to finish)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from disk" -f -a "encrypt" -d 'Turn the guest layer on for a disk that holds data: an offline, resumable conversion ("needs a reboot")'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from disk" -f -a "list" -d 'List the disks of a store (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from disk" -f -a "show" -d 'Show a disk: layers, ciphers, keys and versions, scope, created, rotation due dates (with the vault), and what the real cloud would refuse'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "create" -d 'Create a scope bound to a customer key (created if missing; offline)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from scope" -f -a "list" -d 'List the scopes of a store and their disks'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from snapshot" -f -a "create" -d 'Take a snapshot of a disk: online through the running mount (writes held during the copy) or offline. The ciphertext is copied as it is (reflinked where the backing filesystem can) and keeps the disk\'s keys'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from snapshot" -f -a "list" -d 'List snapshots (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from snapshot" -f -a "delete" -d 'Delete a snapshot (offline)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from snapshot" -f -a "restore" -d 'Bring a disk back to a snapshot, byte for byte and with the keys it had then (offline, resumable)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "create" -d 'Make an image from a disk (offline) or a snapshot (DISK@SNAPSHOT, also while mounted)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "list" -d 'List images (no vault needed)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "delete" -d 'Delete an image'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "create" -d 'Create a vault and print its recovery key once'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "list" -d 'List keys: names, kinds, versions, state, creation (never material)'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "passwd" -d 'Change the passphrase, with a new master key: the old passphrase then opens neither the vault nor its backup. No store is touched. The recovery slot is made again: keep the recovery key by giving it (--keep-recovery-key, or unlock with --recovery-key-file), or get a new one (--new-recovery-key). Refused while a mount uses the vault'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "recovery-key" -d 'Replace the recovery key (printed once), with a new master key: the old recovery key then opens neither the vault nor its backup. Needs the passphrase. Refused while a mount uses the vault'
complete -c strata -n "__fish_strata_using_subcommand help; and __fish_seen_subcommand_from vault" -f -a "key" -d 'Manage keys'
