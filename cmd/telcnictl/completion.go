package main

import (
	"github.com/spf13/cobra"
)

func completionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script (commands, flags, and pod names from the agent)",
		Long: `completion prints the completion script for bash, zsh or fish. Commands
and flags complete, and so do pod names (NAMESPACE/NAME) for "pod" and
"check": the script asks the agent (with the --socket given on the command
line) when you press TAB.`,
		Example: `  source <(telcnictl completion bash)
  telcnictl completion bash > /etc/bash_completion.d/telcnictl
  telcnictl completion zsh > "${fpath[1]}/_telcnictl"
  telcnictl completion fish > ~/.config/fish/completions/telcnictl.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      args(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			switch argv[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			default:
				return root.GenFishCompletion(w, true)
			}
		},
	}
}
