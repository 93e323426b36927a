"""What a sweep gives back to people: the leaderboard and the HTML report."""
